"""A job's create fields as the API takes them (JSON, by id), checked by the create
form and the service exactly as the page's are: the body becomes the form's POST.

So the API can create no job the page would refuse, and says why with the form's
own words, per field: ``{"node_specs": [...], "parameters": {"lora_rank": [...]}}``.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import QueryDict
from django.utils.translation import gettext as _
from rest_framework import exceptions

from accounts.models import Access, Project
from api.errors import as_drf
from finetune.forms.jobs import (
    CUSTOM,
    DURATION_PRESETS,
    JobForm,
    duration_initial,
    initial_from_draft,
)
from finetune.forms.parameters import PREFIX
from finetune.inputs import whole_number
from finetune.models import Algorithm, Job, Priority, Scenario
from finetune.services.data import MODEL_VERSION, version_ref
from finetune.services.jobs import DataSetRejected, JobDraft, create_job

#: API field -> the form's, where they differ
_DURATION_FIELDS = ("duration_preset", "duration_custom_hours")
_ONE_VALUE = ("name", "access", "priority", "scenario", "algorithm", "pretrained_model")
_ONE_VALUE += ("train_dataset", "validation_dataset", "test_dataset", "model_repo")
_ONE_VALUE += ("pool", "driver_version", "node_count", "resume_from_step")
DEFAULT_HOURS = 24


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def form_data(body: dict) -> QueryDict:
    """The create form's POST for an API body."""
    data = QueryDict(mutable=True)
    for name in _ONE_VALUE:
        if name in body:
            data[name] = _text(body[name])
    data.setdefault("access", Access.NONE)
    data.setdefault("priority", str(Priority.NORMAL))
    data.setdefault("node_count", "1")
    scenario = Scenario.objects.filter(pk=whole_number(body.get("scenario"))).first()
    data["task_type"] = scenario.task_type if scenario is not None else ""
    data.setlist("node_specs", [_text(v) for v in _listed(body.get("node_specs"))])
    data["node_names"] = ", ".join(_text(v) for v in _listed(body.get("node_names")))
    hours = body.get("duration_hours", DEFAULT_HOURS)
    if isinstance(hours, int | float) and not isinstance(hours, bool) and hours in DURATION_PRESETS:
        data["duration_preset"] = str(int(hours))
    else:
        data["duration_preset"] = CUSTOM
        data["duration_custom_hours"] = _text(hours)
    algorithm = Algorithm.objects.filter(pk=whole_number(body.get("algorithm"))).first()
    schema = algorithm.parameters_schema if algorithm is not None else {}
    for name, value in _parameters(body.get("parameters"), schema).items():
        data[f"{PREFIX}-{name}"] = value
    return data


def _listed(value) -> list:
    if value in (None, ""):
        return []
    return value if isinstance(value, list) else [value]


def _parameters(given, schema: dict) -> dict[str, str]:
    """Each of the schema's parameters as the form posts it: the given value, else its
    default (a page shows the default filled in; a switch left out of a POST is off)."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise exceptions.ValidationError({"parameters": [_("An object of parameter values.")]})
    props = schema.get("properties") or {}
    unknown = sorted(set(given) - set(props))
    if unknown:
        raise exceptions.ValidationError(
            {
                "parameters": {
                    name: [_("The algorithm has no parameter of this name.")] for name in unknown
                }
            }
        )
    posted = {}
    for name, prop in props.items():
        value = given.get(name, prop.get("default"))
        if MODEL_VERSION in prop:
            value = version_ref(value) if isinstance(value, dict) else value
        if prop.get("type") == "boolean":
            if value is True or value in ("true", "on", "1"):
                posted[name] = "on"
            elif value not in (False, None, "false", "off", "0", ""):
                raise exceptions.ValidationError(
                    {"parameters": {name: [_("Either true or false.")]}}
                )
            continue
        if isinstance(value, list | dict):
            raise exceptions.ValidationError({"parameters": {name: [_("A single value.")]}})
        posted[name] = _text(value)
    return posted


def refusal(form: JobForm) -> dict:
    """The form's errors as the API names its fields."""
    errors: dict[str, Any] = {}
    for name, found in form.errors.items():
        key = "duration_hours" if name in _DURATION_FIELDS else name
        key = "non_field_errors" if key == "__all__" else key
        errors.setdefault(key, []).extend(found)
    parameters = {name: list(found) for name, found in form.parameters.errors.items()}
    if parameters:
        errors["parameters"] = parameters
    return errors


def _service_refusal(form: JobForm, exc: ValidationError) -> dict:
    errors = as_drf(exc, {name: "duration_hours" for name in _DURATION_FIELDS})
    parameters = {name: errors.pop(name) for name in list(errors) if name in form.parameters.fields}
    if parameters:
        errors["parameters"] = parameters
    if isinstance(exc, DataSetRejected):
        errors["reports"] = [{"dataset": d.pk, "report": report} for d, report in exc.reports]
    return errors


def checked_draft(user, project: Project, body: dict, cloned_from: Job | None = None):
    """The form bound to ``body`` and its draft, or a 400 with every error at once."""
    form = JobForm(form_data(body), user=user, project=project)
    if not form.is_valid():
        raise exceptions.ValidationError(refusal(form))
    return form, form.draft(cloned_from)


def create(user, project: Project, body: dict, cloned_from: Job | None = None) -> Job:
    form, draft = checked_draft(user, project, body, cloned_from)
    try:
        return create_job(user, project, draft)
    except ValidationError as exc:
        raise exceptions.ValidationError(_service_refusal(form, exc)) from exc


def body_of(draft: JobDraft) -> dict:
    """A draft (a job to clone, services.jobs.draft_from) as an API body: the create
    form's initial values, with node names as a list and the duration in hours."""
    body = initial_from_draft(draft)
    for name in ("task_type", *duration_initial(draft.duration)):
        del body[name]
    return {
        **body,
        "parameters": dict(draft.parameters),
        "node_names": list(draft.node_names),
        "duration_hours": draft.duration.total_seconds() / 3600,
    }
