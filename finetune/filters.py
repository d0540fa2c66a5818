"""Search and filters of the job list (搜索, F4), as a form the list view applies.

The same filter runs for the page and for "select all" in batch delete, so the
server re-runs it rather than trusting posted ids (STYLE.md "Bulk actions").
"""

from __future__ import annotations

from django import forms
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils.translation import gettext_lazy as _

from finetune.models import JobNodeSpec, JobStatus
from scheduler.models import NodeSpec

#: ?sort= keys and the columns they order by; "-key" sorts descending.
SORTS = {
    "name": "name",
    "status": "status",
    "priority": "priority",
    "scenario": "scenario__sort_order",
    "creator": "creator__username",
    "node_count": "node_count",
    "created": "created_at",
}
DEFAULT_SORT = "-created"


class SpecChoiceField(forms.ModelChoiceField):
    """A spec by its name: its resources would make the search bar wider than the page."""

    def label_from_instance(self, obj: NodeSpec) -> str:
        return obj.name


class JobFilterForm(forms.Form):
    q = forms.CharField(label=_("Search"), required=False, max_length=128)
    status = forms.ChoiceField(
        label=_("Status"), required=False, choices=[("", _("All statuses")), *JobStatus.choices]
    )
    creator = forms.CharField(label=_("Creator"), required=False, max_length=150)
    spec = SpecChoiceField(
        label=_("Node spec"),
        required=False,
        queryset=NodeSpec.objects.all(),
        empty_label=_("All node specs"),
    )
    model_repo = forms.CharField(label=_("Save-model address"), required=False, max_length=500)
    sort = forms.CharField(required=False, widget=forms.HiddenInput)

    def filter(self, jobs: QuerySet) -> QuerySet:
        """`jobs` narrowed by the valid filters; invalid ones are ignored, not errors."""
        data = self.cleaned_data if self.is_valid() else {}
        if data.get("q"):
            jobs = jobs.filter(name__icontains=data["q"])
        if data.get("status"):
            jobs = jobs.filter(status=data["status"])
        if data.get("creator"):
            jobs = jobs.filter(creator__username__icontains=data["creator"])
        if data.get("spec"):
            offered = JobNodeSpec.objects.filter(job=OuterRef("pk"), spec=data["spec"])
            jobs = jobs.filter(Q(spec_in_use=data["spec"]) | Exists(offered))
        if data.get("model_repo"):
            text = data["model_repo"]
            jobs = jobs.filter(
                Q(model_repo__name__icontains=text) | Q(model_repo__location__icontains=text)
            )
        return jobs.order_by(*self.ordering())

    def ordering(self) -> list[str]:
        key = self.sort_key()
        column = SORTS[key.lstrip("-")]
        descending = key.startswith("-")
        return [f"-{column}" if descending else column, "-id" if descending else "id"]

    def sort_key(self) -> str:
        key = (self.data.get("sort") or DEFAULT_SORT).strip()
        return key if key.lstrip("-") in SORTS else DEFAULT_SORT

    @property
    def active(self) -> bool:
        return any(self.data.get(name) for name in ("q", "status", "creator", "spec", "model_repo"))
