"""The create form of a job (创建大模型精调, F1) and the small forms of its operations.

Choices cascade: task type -> scenario -> algorithm, and only the data sets and
save-model addresses of the scenario that the user may use. The form is built
from whatever the page last posted, so a refresh (htmx, or the no-JS "Update
choices" button) re-renders it with the new choices and no error messages.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.http import QueryDict
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from accounts.models import Access, Project
from finetune import access
from finetune.forms.parameters import ParametersForm
from finetune.inputs import whole_number
from finetune.models import (
    Algorithm,
    Dataset,
    ModelRepo,
    PretrainedModel,
    Priority,
    Scenario,
    TaskType,
)
from finetune.services.data import usable_versions
from finetune.services.jobs import JobDraft, access_cap, access_error, pinning_error
from scheduler.models import NodeSpec, ResourcePool

#: Hours offered for 使用时长 (F1.16, F8.1); "custom" takes a number of hours.
DURATION_PRESETS = [1, 2, 4, 8, 12, 24, 48, 72, 168]
CUSTOM = "custom"
CASCADE = ("task_type", "scenario", "algorithm", "train_dataset", "validation_dataset")
CASCADE += ("test_dataset", "model_repo")
MAX_SPEC_CHOICES = 4
MAX_NODE_COUNT = 128
#: Kubernetes node names are DNS names: at most 253 characters.
MAX_NODE_NAME = 253
#: The longest duration a job may ask for, in hours: a year.
MAX_DURATION_HOURS = 24 * 365
MIN_DURATION_HOURS = 0.1


def duration_choices() -> list[tuple[str, str]]:
    presets = [(str(hours), _duration_label(hours)) for hours in DURATION_PRESETS]
    return [*presets, (CUSTOM, _("Custom"))]


def _duration_label(hours: int) -> str:
    if hours % 24 == 0:
        days = hours // 24
        return str(_("%(n)s day(s)") % {"n": days})
    return str(_("%(n)s hour(s)") % {"n": hours})


class DurationFields(forms.Form):
    """Presets or a custom number of hours; shared by the create and change-duration forms."""

    duration_preset = forms.ChoiceField(label=_("Duration"), choices=duration_choices, initial="24")
    duration_custom_hours = forms.FloatField(
        label=_("Custom duration (hours)"),
        required=False,
        min_value=MIN_DURATION_HOURS,
        max_value=MAX_DURATION_HOURS,
        widget=forms.NumberInput(attrs={"step": "any"}),
    )

    def clean(self) -> dict:
        cleaned = super().clean()
        preset = cleaned.get("duration_preset")
        if preset == CUSTOM:
            hours = cleaned.get("duration_custom_hours")
            if hours is None and "duration_custom_hours" not in self.errors:
                self.add_error("duration_custom_hours", _("Enter the number of hours."))
            elif hours is not None:
                cleaned["duration"] = timedelta(hours=hours)
        elif preset:
            cleaned["duration"] = timedelta(hours=int(preset))
        return cleaned


def duration_initial(duration: timedelta) -> dict:
    hours = duration.total_seconds() / 3600
    if hours.is_integer() and int(hours) in DURATION_PRESETS:
        return {"duration_preset": str(int(hours))}
    return {"duration_preset": CUSTOM, "duration_custom_hours": round(hours, 2)}


class OrderedSpecsWidget(forms.Widget):
    """Several selects named alike: the browser posts them in page order, first choice first."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.specs: list[NodeSpec] = []

    def value_from_datadict(self, data, files, name):
        values = data.getlist(name) if hasattr(data, "getlist") else data.get(name, [])
        return [str(v) for v in values if v]

    def format_value(self, value):
        return [str(getattr(v, "pk", v)) for v in (value or [])]

    def render(self, name, value, attrs=None, renderer=None) -> str:
        chosen = self.format_value(value)
        slots = min(MAX_SPEC_CHOICES, max(len(self.specs), 1))
        parts = []
        for index in range(slots):
            current = chosen[index] if index < len(chosen) else ""
            options = format_html_join(
                "",
                '<option value="{}"{}>{} — {}</option>',
                (
                    (
                        spec.pk,
                        " selected" if str(spec.pk) == current else "",
                        spec.name,
                        spec.summary,
                    )
                    for spec in self.specs
                ),
            )
            label = _("Choice %(n)s") % {"n": index + 1}
            empty = "" if index == 0 else mark_safe('<option value="">—</option>')
            parts.append(
                format_html(
                    '<label class="spec-choice">{} <select name="{}" id="id_{}_{}">{}{}</select>'
                    "</label>",
                    label,
                    name,
                    name,
                    index,
                    empty,
                    options,
                )
            )
        return format_html(
            '<div class="spec-choices">{}</div>', format_html_join("", "{}", ((p,) for p in parts))
        )


class OrderedSpecsField(forms.Field):
    widget = OrderedSpecsWidget

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.specs: list[NodeSpec] = []

    def set_specs(self, specs: list[NodeSpec]) -> None:
        self.specs = specs
        self.widget.specs = specs

    def clean(self, value) -> list[NodeSpec]:
        by_pk = {str(spec.pk): spec for spec in self.specs}
        if not value:
            raise forms.ValidationError(_("Choose at least one node spec."))
        if len(set(value)) != len(value):
            raise forms.ValidationError(_("Each node spec may be chosen once."))
        unknown = [v for v in value if v not in by_pk]
        if unknown:
            raise forms.ValidationError(_("Choose node specs from the list."))
        return [by_pk[v] for v in value]


class JobForm(DurationFields):
    name = forms.CharField(label=_("Name"), max_length=128)
    access = forms.ChoiceField(label=_("Others' access"), choices=Access.choices)
    priority = forms.TypedChoiceField(
        label=_("Priority"), choices=Priority.choices, coerce=int, initial=Priority.NORMAL
    )
    task_type = forms.ChoiceField(label=_("Task type"), choices=TaskType.choices)
    scenario = forms.ModelChoiceField(label=_("Scenario"), queryset=Scenario.objects.none())
    algorithm = forms.ModelChoiceField(label=_("Algorithm"), queryset=Algorithm.objects.none())
    pretrained_model = forms.ModelChoiceField(
        label=_("Base model"), queryset=PretrainedModel.objects.none()
    )
    train_dataset = forms.ModelChoiceField(
        label=_("Training data"), queryset=Dataset.objects.none()
    )
    validation_dataset = forms.ModelChoiceField(
        label=_("Validation data"), queryset=Dataset.objects.none(), required=False
    )
    test_dataset = forms.ModelChoiceField(
        label=_("Test data"), queryset=Dataset.objects.none(), required=False
    )
    model_repo = forms.ModelChoiceField(
        label=_("Save-model address"), queryset=ModelRepo.objects.none()
    )
    node_specs = OrderedSpecsField(
        label=_("Node spec"),
        help_text=_("In order of preference; the job runs on the first that fits."),
    )
    node_names = forms.CharField(
        label=_("Node names"),
        required=False,
        max_length=MAX_NODE_COUNT * (MAX_NODE_NAME + 2),
        help_text=_("Pin the job to these nodes, separated by commas."),
    )
    pool = forms.ModelChoiceField(
        label=_("Dedicated resource pool"), queryset=ResourcePool.objects.none(), required=False
    )
    driver_version = forms.CharField(label=_("Driver version"), required=False, max_length=64)
    node_count = forms.IntegerField(
        label=_("Node count"), min_value=1, max_value=MAX_NODE_COUNT, initial=1
    )
    # a clone that goes on from a checkpoint of the job it clones (job_form.html)
    resume_from_step = forms.IntegerField(
        required=False, min_value=1, max_value=2**31 - 1, widget=forms.HiddenInput
    )

    def __init__(self, *args, user, project: Project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user, self.project = user, project
        self._cascade()
        specs = list(NodeSpec.objects.filter(enabled=True))
        self.fields["node_specs"].set_specs(specs)
        self.fields["pool"].queryset = ResourcePool.objects.filter(dedicated=True, projects=project)
        for name in CASCADE:
            self.fields[name].widget.attrs["data-cascade"] = ""
        parameters = self.initial.get("parameters")
        if self.initial.get(PARAMETERS_OF) not in (None, getattr(self.shown_algorithm, "pk", None)):
            # a refresh whose cascade moved to another algorithm (a new scenario or task
            # type): its own defaults, not the values typed for the one it replaces
            parameters = None
        self.parameters = ParametersForm(
            self.shown_algorithm.parameters_schema if self.shown_algorithm else {},
            self.data if self.is_bound else None,
            initial=parameters,
            model_versions=lambda scenario: usable_versions(user, project, scenario),
        )
        self._access_choices()

    # --- cascade -----------------------------------------------------------------------

    def _current(self, name: str) -> str:
        if self.is_bound:
            return self.data.get(name, "") or ""
        value = self.initial.get(name, "")
        return str(getattr(value, "pk", value) or "")

    def _pick(self, name: str, queryset) -> object | None:
        """The choice shown for `name`: the posted one if still offered, else the first."""
        self.fields[name].queryset = queryset
        options = list(queryset)
        wanted = self._current(name)
        found = next((o for o in options if str(o.pk) == wanted), None)
        if found is None and self.fields[name].required and options:
            found = options[0]
        if not self.is_bound:
            self.initial[name] = found.pk if found else None
        return found

    def _cascade(self) -> None:
        task_type = self._current("task_type")
        if task_type not in TaskType.values:
            task_type = TaskType.LLM
            self.initial["task_type"] = task_type
        self.shown_task_type = task_type
        scenario = self._pick("scenario", Scenario.objects.filter(task_type=task_type))
        self.shown_scenario = scenario
        algorithms = Algorithm.objects.filter(enabled=True, scenario=scenario)
        self.shown_algorithm = self._pick("algorithm", algorithms)
        self.shown_model = self._pick(
            "pretrained_model", PretrainedModel.objects.filter(enabled=True, task_type=task_type)
        )
        datasets = access.restrict(
            Dataset.objects.filter(project=self.project, scenario=scenario), self.user
        ).order_by("name")
        # Saving a model into a repo writes to it: only the repos the user may change.
        repos = access.restrict(
            ModelRepo.objects.filter(project=self.project, scenario=scenario), self.user, "change"
        ).order_by("name")
        self.shown_datasets = [
            self._pick(name, datasets)
            for name in ("train_dataset", "validation_dataset", "test_dataset")
        ]
        self.shown_repo = self._pick("model_repo", repos)

    def _access_choices(self) -> None:
        """F9.2/F9.3 shown before submitting: the cap and its reason as the field's help."""
        datasets = [d for d in self.shown_datasets if d is not None]
        self.access_cap, self.access_reason = access_cap(self.project, datasets, self.shown_repo)
        field = self.fields["access"]
        if not self.project.sharing_enabled:
            field.choices = [(Access.NONE, Access.NONE.label)]
        if self.access_cap != Access.READ_WRITE:
            field.help_text = _("At most %(cap)s. %(reason)s") % {
                "cap": self.access_cap.label,
                "reason": self.access_reason,
            }
        if not self.is_bound and "access" not in self.initial:
            self.initial["access"] = Access.NONE

    # --- validation --------------------------------------------------------------------

    def is_valid(self) -> bool:
        valid = super().is_valid()
        return self.parameters.is_valid() and valid

    def clean_node_names(self) -> list[str]:
        raw = self.cleaned_data.get("node_names", "")
        names = [name.strip() for name in raw.replace("\n", ",").split(",") if name.strip()]
        if len(names) > MAX_NODE_COUNT:
            raise forms.ValidationError(
                _("At most %(count)s node names.") % {"count": MAX_NODE_COUNT}
            )
        if any(len(name) > MAX_NODE_NAME for name in names):
            raise forms.ValidationError(
                _("A node name has at most %(count)s characters.") % {"count": MAX_NODE_NAME}
            )
        return names

    def clean(self) -> dict:
        """The rules across fields, the service's own (services/jobs.py), shown with
        every other error of the form at once."""
        cleaned = super().clean()
        pool, driver = cleaned.get("pool"), cleaned.get("driver_version")
        if pinned := pinning_error(cleaned.get("node_names"), pool, driver):
            self.add_error("node_names", pinned)
        level = cleaned.get("access")
        if level and (too_open := access_error(level, self.access_cap, self.access_reason)):
            self.add_error("access", too_open)
        return cleaned

    def draft(self, cloned_from=None) -> JobDraft:
        data = self.cleaned_data
        return JobDraft(
            name=data["name"],
            scenario=data["scenario"],
            algorithm=data["algorithm"],
            pretrained_model=data["pretrained_model"],
            train_dataset=data["train_dataset"],
            validation_dataset=data.get("validation_dataset"),
            test_dataset=data.get("test_dataset"),
            model_repo=data["model_repo"],
            node_specs=data["node_specs"],
            duration=data["duration"],
            access=data["access"],
            priority=data["priority"],
            parameters=self.parameters.cleaned_data,
            node_names=data["node_names"],
            pool=data.get("pool"),
            driver_version=data.get("driver_version", ""),
            node_count=data["node_count"],
            cloned_from=cloned_from,
            resume_from_step=data.get("resume_from_step"),
        )


def initial_from_draft(draft: JobDraft) -> dict:
    """The create form's initial values from a job to clone (F3)."""
    return {
        "name": draft.name,
        "access": draft.access,
        "priority": draft.priority,
        "task_type": draft.scenario.task_type,
        "scenario": draft.scenario.pk,
        "algorithm": draft.algorithm.pk,
        "pretrained_model": draft.pretrained_model.pk,
        "train_dataset": draft.train_dataset.pk,
        "validation_dataset": getattr(draft.validation_dataset, "pk", None),
        "test_dataset": getattr(draft.test_dataset, "pk", None),
        "model_repo": draft.model_repo.pk,
        "node_specs": [spec.pk for spec in draft.node_specs],
        "node_names": ", ".join(draft.node_names),
        "pool": getattr(draft.pool, "pk", None),
        "driver_version": draft.driver_version,
        "node_count": draft.node_count,
        "parameters": draft.parameters,
        **duration_initial(draft.duration),
    }


def refreshed_initial(data: QueryDict) -> dict:
    """A posted form turned into initial values, to re-render it after a cascade change.

    The parameters keep their posted values only while the same algorithm is shown.
    """
    initial: dict = {key: data.get(key) for key in data if not key.startswith("param-")}
    initial["node_specs"] = [v for v in data.getlist("node_specs") if v]
    shown = whole_number(data.get("_shown_algorithm"))
    algorithm = Algorithm.objects.filter(pk=shown).first() if shown is not None else None
    if algorithm is not None and str(shown) == data.get("algorithm"):
        parameters = {}
        for name, prop in (algorithm.parameters_schema.get("properties") or {}).items():
            key = f"param-{name}"
            if prop.get("type") == "boolean":
                # An unchecked box is absent from the POST: that is False, not the default.
                parameters[name] = key in data
            elif key in data:
                parameters[name] = data[key]
        initial["parameters"] = parameters
        initial[PARAMETERS_OF] = algorithm.pk
    return initial


PARAMETERS_OF = "_parameters_of"  # initial values: the algorithm the parameters were typed for


class ChangeDurationForm(DurationFields):
    pass


class ChangePriorityForm(forms.Form):
    priority = forms.TypedChoiceField(label=_("Priority"), choices=Priority.choices, coerce=int)
