"""The webhook's form: where to, what for, and whether it is on."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from webhooks.models import SUBSCRIBABLE, Webhook


class WebhookForm(forms.ModelForm):
    url = forms.URLField(
        label=_("URL"),
        max_length=2000,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"placeholder": "https://"}),
        help_text=_("Messages are POSTed here as JSON, signed per Standard Webhooks."),
    )
    events = forms.MultipleChoiceField(
        label=_("Events"),
        choices=SUBSCRIBABLE,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("What the address is told about."),
    )

    class Meta:
        model = Webhook
        fields = ["url", "description", "events", "enabled"]
        help_texts = {
            "enabled": _("When off, nothing is sent to the address."),
        }

    def clean_events(self) -> list[str]:
        # in the order of the list, whatever order they were ticked in
        chosen = set(self.cleaned_data["events"])
        return [value for value, _label in SUBSCRIBABLE if value in chosen]
