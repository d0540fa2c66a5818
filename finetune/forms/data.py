"""Forms to prepare a job's inputs: a data set (upload or path) and a save-model address."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.models import Access, Project
from finetune import storage
from finetune.models import Scenario


class _SharedForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=128)
    scenario = forms.ModelChoiceField(label=_("Scenario"), queryset=Scenario.objects.all())
    access = forms.ChoiceField(
        label=_("Others' access"), choices=Access.choices, initial=Access.READ_ONLY
    )

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.project = project
        if not project.sharing_enabled:
            # F9.3: with sharing off the only level is none.
            self.fields["access"].choices = [(Access.NONE, Access.NONE.label)]
            self.fields["access"].initial = Access.NONE
            self.fields["access"].help_text = _(
                "An administrator turned sharing off for this project."
            )


class DatasetForm(_SharedForm):
    upload = forms.FileField(
        label=_("Upload"),
        required=False,
        help_text=_("A .jsonl file; for text-to-image, a .zip of images with metadata.jsonl."),
    )
    path = forms.CharField(
        label=_("Or a path under the data root"),
        required=False,
        max_length=500,
    )

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, project=project, **kwargs)
        areas = ", ".join(f"{area}/" for area in storage.readable_areas(project.pk))
        self.fields["path"].help_text = _(
            "A file or folder that already lies in one of these folders of the data root: "
            "%(areas)s."
        ) % {"areas": areas}

    def clean(self) -> dict:
        cleaned = super().clean()
        if bool(cleaned.get("upload")) == bool(cleaned.get("path")):
            raise forms.ValidationError(_("Upload a file or give a path, one of the two."))
        return cleaned


class ModelRepoForm(_SharedForm):
    path = forms.CharField(
        label=_("Path under the data root"),
        required=False,
        max_length=500,
        help_text=_("Leave empty for a new folder of this project, in its folder repos/<id>/."),
    )
    description = forms.CharField(label=_("Description"), required=False, widget=forms.Textarea)
