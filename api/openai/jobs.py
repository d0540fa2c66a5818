"""OpenAI's fine-tuning jobs as the platform's: a request names a base model, files and a
few hyper-parameters; the rest of the create form comes from the project's defaults
(finetune/models/defaults.py). The job is then made by the API's own create path
(api/drafts.py), so it is checked exactly as the page checks a job."""

from __future__ import annotations

import shutil
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.text import slugify
from django.utils.translation import gettext as _
from rest_framework import exceptions

from accounts.models import Access, Project
from api import drafts, scope
from api.openai.files import CHAT, PREFERENCE, SCENARIOS
from finetune import access
from finetune.models import (
    Algorithm,
    Dataset,
    Job,
    JobStatus,
    ModelRepo,
    PretrainedModel,
    ProjectDefaults,
    Scenario,
)
from finetune.services.data import create_model_repo
from finetune.storage import resolve
from scheduler import capacity
from scheduler.models import NodeSpec

#: OpenAI's method -> (the platform's algorithm, the kind of file it trains on)
METHODS = {"supervised": ("sft_lora", CHAT), "dpo": ("dpo", PREFERENCE)}
#: OpenAI's hyper-parameter -> the algorithm's parameter
HYPERPARAMETERS = {"n_epochs": "epochs", "batch_size": "batch_size", "beta": "beta"}
AUTO = "auto"
FILE, JOB = "file-", "ftjob-"


class Refused(Exception):
    """An OpenAI error: its message, the parameter at fault and its code."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None, status=400):
        super().__init__(message)
        self.message, self.param, self.code, self.status = message, param, code, status


def ref_id(value: Any, prefix: str) -> int | None:
    if not isinstance(value, str) or not value.startswith(prefix):
        return None
    rest = value[len(prefix) :]
    return int(rest) if rest.isascii() and rest.isdigit() and len(rest) < 19 else None


def dataset_of(request, value: Any, param: str, project: Project) -> Dataset:
    pk = ref_id(value, FILE)
    found = (
        scope.restrict(Dataset.objects.filter(project=project), request).filter(pk=pk).first()
        if pk is not None
        else None
    )
    if found is None:
        raise Refused(_("No such file: %(id)s.") % {"id": value}, param, "file_not_found")
    return found


def _hyperparameters(body: dict, method: str) -> dict:
    chosen = body.get("method") or {}
    if not isinstance(chosen, dict):
        raise Refused(_("“method” must be an object."), "method")
    inner = chosen.get(method) or {}
    found = (
        (inner.get("hyperparameters") if isinstance(inner, dict) else None)
        or body.get("hyperparameters")
        or {}
    )
    if not isinstance(found, dict):
        raise Refused(_("“hyperparameters” must be an object."), "hyperparameters")
    return found


def parameters(algorithm: Algorithm, given: dict, seed: Any) -> dict:
    """The algorithm's parameters from OpenAI's hyper-parameters: "auto" (or nothing) is
    the algorithm's default; the learning-rate multiplier scales the default rate."""
    props = (algorithm.parameters_schema or {}).get("properties") or {}
    values: dict[str, Any] = {}
    for name, value in given.items():
        if value == AUTO or value is None:
            continue
        if name == "learning_rate_multiplier":
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise Refused(
                    _("A positive number, or “auto”."), f"hyperparameters.{name}", "invalid_value"
                )
            values["learning_rate"] = props["learning_rate"]["default"] * value
        elif name in HYPERPARAMETERS and HYPERPARAMETERS[name] in props:
            values[HYPERPARAMETERS[name]] = value
        else:
            raise Refused(
                _("The method has no hyper-parameter %(name)s.") % {"name": name},
                f"hyperparameters.{name}",
                "invalid_value",
            )
    if seed is not None and "seed" in props:
        values["seed"] = seed
    return values


def _node_spec(project: Project, defaults: ProjectDefaults | None) -> NodeSpec:
    specs = NodeSpec.objects.filter(enabled=True).order_by("sort_order", "name")
    if defaults is not None and defaults.node_spec_id is not None:
        chosen = specs.filter(pk=defaults.node_spec_id).first()
        if chosen is not None:
            return chosen
    count = defaults.node_count if defaults is not None else 1
    for spec in specs:
        if capacity.why_never(project_id=project.pk, specs=[spec], node_count=count) is None:
            return spec
    raise Refused(_("No node spec of this cluster can run a job of this project."), None)


def _model_repo(user, project: Project, scenario: Scenario, defaults) -> ModelRepo:
    """The project's default save address of the scenario where the user may write to it,
    else the newest one they may write to, else a new one of theirs."""
    writable = access.restrict(
        ModelRepo.objects.filter(project=project, scenario=scenario), user, "change"
    )
    if defaults is not None:
        chosen = writable.filter(pk__in=defaults.model_repos.values("pk")).first()
        if chosen is not None:
            return chosen
    newest = writable.order_by("-created_at", "-id").first()
    if newest is not None:
        return newest
    stem = slugify(f"{user.get_username()}-{scenario.code.replace('/', '-')}") or "fine-tunes"
    name, number = stem, 2
    while ModelRepo.objects.filter(project=project, name=name).exists():
        name, number = f"{stem}-{number}", number + 1
    try:
        repo = create_model_repo(user, project, name=name, scenario=scenario, level=Access.NONE)
    except (IntegrityError, ValidationError):
        # made meanwhile by another request of this user's: that one is theirs to write to
        found = writable.filter(name=name).first()
        if found is None:
            raise Refused(_("Choose a save-model address in the project's defaults.")) from None
        return found
    repo.made_now = True  # its folder is new (services.data._free_repo_folder)
    return repo


def _refusal(errors: dict) -> Refused:
    """The first of the create form's errors, as OpenAI names the parameter."""
    names = {"train_dataset": "training_file", "validation_dataset": "validation_file"}
    names |= {"pretrained_model": "model"}
    for field, found in errors.items():
        if isinstance(found, dict):  # the algorithm's parameters
            inverse = {v: k for k, v in HYPERPARAMETERS.items()} | {
                "learning_rate": "learning_rate_multiplier"
            }
            name, messages = next(iter(found.items()))
            return Refused(
                " ".join(map(str, messages)), f"hyperparameters.{inverse.get(name, name)}"
            )
        if field == "reports":
            continue
        return Refused(" ".join(map(str, found)), names.get(field))
    return Refused(_("The job was refused."))


def create(request, project: Project, body: dict) -> Job:
    if not isinstance(body, dict):
        raise Refused(_("The body must be a JSON object."))
    model_name = body.get("model")
    model = PretrainedModel.objects.filter(enabled=True, task_type="llm", name=model_name).first()
    if model is None:
        raise Refused(
            _("The model %(model)s does not exist or is not a base model of this platform.")
            % {"model": model_name},
            "model",
            "model_not_found",
        )
    method = (
        (body.get("method") or {}).get("type", "supervised")
        if isinstance(body.get("method"), dict)
        else "supervised"
    )
    if not isinstance(method, str) or method not in METHODS:
        raise Refused(
            _("The method must be one of %(methods)s.") % {"methods": ", ".join(METHODS)},
            "method.type",
        )
    code, kind = METHODS[method]
    algorithm = Algorithm.objects.filter(enabled=True, code=code).select_related("scenario").first()
    if algorithm is None:
        raise Refused(
            _("The method %(method)s is not enabled here.") % {"method": method}, "method"
        )
    scenario = algorithm.scenario
    train = dataset_of(request, body.get("training_file"), "training_file", project)
    validation = (
        dataset_of(request, body["validation_file"], "validation_file", project)
        if body.get("validation_file")
        else None
    )
    for param, dataset in (("training_file", train), ("validation_file", validation)):
        if dataset is not None and dataset.scenario.code != SCENARIOS[kind]:
            raise Refused(
                _("The %(method)s method needs a file of %(kind)s rows.")
                % {"method": method, "kind": kind},
                param,
                "invalid_file_format",
            )
    suffix = body.get("suffix") or ""
    if not isinstance(suffix, str) or len(suffix) > 64:
        raise Refused(_("The suffix is text of at most 64 characters."), "suffix")
    metadata = body.get("metadata") or {}
    if (
        not isinstance(metadata, dict)
        or len(metadata) > 16
        or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
            for k, v in metadata.items()
        )
    ):
        raise Refused(
            _("Metadata is at most 16 pairs of text: keys of 64, values of 512 characters."),
            "metadata",
        )
    defaults = ProjectDefaults.objects.filter(project=project).first()
    hours = (defaults.duration_hours if defaults else None) or (
        settings.JINGTIAO_DEFAULT_DURATION.total_seconds() / 3600
    )
    values = parameters(algorithm, _hyperparameters(body, method), body.get("seed"))
    spec = _node_spec(project, defaults)
    made_repo = None
    try:
        with transaction.atomic():
            repo = _model_repo(request.user, project, scenario, defaults)
            made_repo = repo if getattr(repo, "made_now", False) else None
            draft = {
                "name": f"{model.name}-{suffix}"[:128] if suffix else f"{model.name}-ft",
                "scenario": scenario.pk,
                "algorithm": algorithm.pk,
                "pretrained_model": model.pk,
                "train_dataset": train.pk,
                "validation_dataset": validation.pk if validation else None,
                "model_repo": repo.pk,
                "parameters": values,
                "node_specs": [spec.pk],
                "node_count": defaults.node_count if defaults else 1,
                "duration_hours": hours,
                "priority": defaults.priority if defaults else None,
                "access": Access.NONE,
            }
            draft = {key: value for key, value in draft.items() if value is not None}
            try:
                job = drafts.create(request.user, project, draft)
            except exceptions.ValidationError as exc:
                raise _refusal(exc.detail if isinstance(exc.detail, dict) else {}) from exc
            except ValidationError as exc:
                raise Refused(" ".join(exc.messages)) from exc
            extra = {"metadata": metadata, "suffix": suffix, "method": method}
            Job.objects.filter(pk=job.pk).update(metadata=extra)
            job.metadata = extra
    except BaseException:
        if made_repo is not None:  # its row was rolled back: its new, empty folder goes too
            shutil.rmtree(resolve(made_repo.location), ignore_errors=True)
        raise
    return job


STATUSES = {
    JobStatus.QUEUED: "queued",
    JobStatus.RUNNING: "running",
    JobStatus.SUCCEEDED: "succeeded",
    JobStatus.FAILED: "failed",
    JobStatus.EXPIRED: "failed",
    JobStatus.STOPPED: "cancelled",
}


def status_of(job: Job) -> str:
    if job.status == JobStatus.QUEUED and job.waiting_for_data:
        return "validating_files"
    return STATUSES[JobStatus(job.status)]
