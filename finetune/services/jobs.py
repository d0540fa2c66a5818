"""What users do with jobs (F1-F3, F8): the pages call these, never the models directly.

Each operation checks what the state machine and F9 require, writes its
JobEvent, and tells the scheduler through `job_changed` once the transaction
commits, so a worker never sees a change that was rolled back.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from accounts.models import Access, Project
from finetune import access, storage, texts
from finetune import memory as fit
from finetune.models import (
    Algorithm,
    Dataset,
    Job,
    JobEvent,
    JobNodeSpec,
    JobStatus,
    ModelRepo,
    ModelVersion,
    PretrainedModel,
    Priority,
    Scenario,
)
from finetune.models.jobs import ACTIVE_STATUSES
from finetune.services import checkpoints, validation
from finetune.services.data import usable_versions, version_parameters, version_ref
from finetune.signals import Change, job_changed
from finetune.states import TransitionError, transition
from finetune.texts import Said, cannot_run, said_of, say
from scheduler import capacity
from scheduler.models import NodeSpec, ResourcePool


class DataSetRejected(ValidationError):
    """A data set of the draft failed validation; `reports` hold the row-level problems."""

    def __init__(self, errors: dict[str, list[str]], reports: list[tuple[Dataset, dict]]) -> None:
        super().__init__(errors)
        self.reports = reports


@dataclass
class JobDraft:
    """Everything the create form (F1) collects; the service re-checks all of it."""

    name: str
    scenario: Scenario
    algorithm: Algorithm
    pretrained_model: PretrainedModel
    train_dataset: Dataset
    model_repo: ModelRepo
    node_specs: list[NodeSpec]
    duration: timedelta
    access: str = Access.NONE
    priority: int = Priority.NORMAL
    validation_dataset: Dataset | None = None
    test_dataset: Dataset | None = None
    parameters: dict = field(default_factory=dict)
    node_names: list[str] = field(default_factory=list)
    pool: ResourcePool | None = None
    driver_version: str = ""
    node_count: int = 1
    cloned_from: Job | None = None
    # go on from the checkpoint of ``cloned_from`` at this step (services/checkpoints.py)
    resume_from_step: int | None = None

    @property
    def datasets(self) -> list[Dataset]:
        found = [self.train_dataset, self.validation_dataset, self.test_dataset]
        return [d for d in found if d is not None]

    def job_fields(self) -> dict:
        """The job's own fields from the draft (its specs and access are set apart)."""
        return {
            "name": self.name.strip(),
            "priority": self.priority,
            "scenario": self.scenario,
            "algorithm": self.algorithm,
            "pretrained_model": self.pretrained_model,
            "train_dataset": self.train_dataset,
            "validation_dataset": self.validation_dataset,
            "test_dataset": self.test_dataset,
            "parameters": self.parameters,
            "model_repo": self.model_repo,
            "node_names": self.node_names,
            "pool": self.pool,
            "driver_version": self.driver_version,
            "node_count": self.node_count,
            "duration": self.duration,
            "cloned_from": self.cloned_from,
            "resume_from_step": self.resume_from_step,
        }


def access_cap(
    project: Project,
    datasets: list[Dataset],
    model_repo: ModelRepo | None,
    used_repos: list[ModelRepo] = (),
) -> tuple[Access, str]:
    """The highest others' access a job may have (F9.2, F9.3) and why, for the form.
    `used_repos` are the repos of the models it reads (e.g. a reward model)."""
    cap = access.highest_job_access(project, [*datasets, *used_repos], model_repo)
    if not project.sharing_enabled:
        return cap, _("An administrator turned sharing off for this project.")
    for resource in [*datasets, model_repo, *used_repos]:
        if resource is not None and Access(resource.access) == cap and cap != Access.READ_WRITE:
            kind = _("data set") if isinstance(resource, Dataset) else _("save-model address")
            return cap, _("The %(kind)s “%(name)s” is shared as %(level)s.") % {
                "kind": kind,
                "name": resource.name,
                "level": Access(resource.access).label,
            }
    return cap, ""


def _notify(job_id: int, change: Change) -> None:
    transaction.on_commit(lambda: job_changed.send(sender=Job, job_id=job_id, change=change))


def check_draft(user, project: Project, draft: JobDraft) -> None:
    """Refuse a draft that breaks a rule, with errors keyed by the form's fields."""
    errors: dict[str, list[str]] = {}
    if not draft.name.strip():
        errors["name"] = [_("This field is required.")]
    if draft.algorithm.scenario_id != draft.scenario.pk:
        errors["algorithm"] = [_("The algorithm does not belong to the chosen scenario.")]
    if draft.pretrained_model.task_type != draft.scenario.task_type:
        errors["pretrained_model"] = [_("The base model is not of the chosen task type.")]
    visible_data = access.restrict(Dataset.objects.filter(project=project), user)
    for name in ("train_dataset", "validation_dataset", "test_dataset"):
        dataset = getattr(draft, name)
        if dataset is None:
            continue
        if dataset.scenario_id != draft.scenario.pk:
            errors[name] = [_("Only data sets of the chosen scenario may be used.")]
        elif not visible_data.filter(pk=dataset.pk).exists():
            errors[name] = [_("You may not use this data set.")]
        elif not storage.is_within(dataset.location, storage.readable_areas(project.pk)):
            # Registered before the areas, or its folder now links elsewhere.
            errors[name] = [_outside(dataset.name, storage.DATASETS, project)]
    writable_repos = access.restrict(ModelRepo.objects.filter(project=project), user, "change")
    if draft.model_repo.scenario_id != draft.scenario.pk:
        errors["model_repo"] = [_("Only model addresses of the chosen scenario may be used.")]
    elif not writable_repos.filter(pk=draft.model_repo.pk).exists():
        errors["model_repo"] = [
            _("You may not save into this save-model address: it needs read-write access.")
        ]
    elif not storage.is_within(draft.model_repo.location, storage.writable_areas(project.pk)):
        errors["model_repo"] = [_outside(draft.model_repo.name, storage.REPOS, project)]
    used_versions = _used_versions(user, project, draft, errors)
    if not draft.node_specs:
        errors["node_specs"] = [_("Choose at least one node spec.")]
    if pinned := pinning_error(draft.node_names, draft.pool, draft.driver_version):
        errors["node_names"] = [pinned]
    if draft.node_count < 1:
        errors["node_count"] = [_("At least one node.")]
    if draft.duration <= timedelta(0):
        errors["duration_preset"] = [_("The duration must be positive.")]
    used_repos = [version.repo for version in used_versions]
    cap, reason = access_cap(project, draft.datasets, draft.model_repo, used_repos)
    if too_open := access_error(draft.access, cap, reason):
        errors["access"] = [too_open]
    if draft.resume_from_step is not None:
        for name, found in checkpoints.resume_errors(
            draft.cloned_from, draft.resume_from_step, draft
        ).items():
            errors.setdefault(name, []).extend(found)
    if errors:
        raise ValidationError(errors)
    _check_can_ever_run(project, draft)
    fit.check(draft)


def pinning_error(node_names, pool, driver_version: str) -> str | None:
    """F1.13: node names name the nodes themselves, so neither a pool nor a driver
    version may be asked for beside them (the create form shows it at once)."""
    if node_names and (pool is not None or driver_version):
        return _(
            "Node names cannot be combined with a dedicated resource pool or a driver version."
        )
    return None


def access_error(level: str, cap: Access, reason: str) -> str | None:
    """F9.2, F9.3: others' access no more open than ``cap`` (access_cap), and why."""
    if Access(level).rank > cap.rank:
        return _("Others' access may be at most %(cap)s. %(reason)s") % {
            "cap": cap.label,
            "reason": reason,
        }
    return None


def _outside(name: str, kind: str, project: Project) -> str:
    return _(
        "The files of “%(name)s” lie outside this project's folder %(area)s/; an operator "
        "must move them there first."
    ) % {"name": name, "area": storage.project_area(project.pk, kind)}


def _used_versions(
    user, project: Project, draft: JobDraft, errors: dict[str, list[str]]
) -> list[ModelVersion]:
    """The model versions the parameters name; each must be one the user may view."""
    found = []
    for name, scenario in version_parameters(draft.algorithm.parameters_schema).items():
        value = draft.parameters.get(name)
        if value in (None, ""):
            continue
        ref = version_ref(value)
        version = (
            usable_versions(user, project, scenario).filter(pk=ref).first()
            if isinstance(value, dict) and ref is not None
            else None
        )
        if version is None:
            errors.setdefault(name, []).append(_("Choose a model version from the list."))
        elif name == START_FROM and (wrong := _other_base(version, draft.pretrained_model)):
            errors.setdefault(name, []).append(wrong)
        else:
            found.append(version)
    return found


START_FROM = "start_from"  # the parameter naming the version a job goes on from


def _other_base(version: ModelVersion, base: PretrainedModel) -> str | None:
    """Why a job on ``base`` cannot go on from ``version``: it was trained from another."""
    from finetune.services.exports import base_model_of

    trained_on = base_model_of(version)
    if trained_on is None or trained_on[1].resolve() == storage.resolve(base.location).resolve():
        return None
    return _(
        "v%(number)d was trained from the base model %(trained)s: choose %(trained)s as the "
        "base model to go on from it."
    ) % {"number": version.number, "trained": trained_on[0]}


def _check_can_ever_run(project: Project, draft: JobDraft) -> None:
    """F1.17: a job no node set could ever hold, even on an empty cluster, is refused
    rather than left to wait forever."""
    reason = capacity.why_never(
        project_id=project.pk,
        specs=draft.node_specs,
        node_count=draft.node_count,
        pool=draft.pool,
        node_names=draft.node_names,
        driver_version=draft.driver_version,
    )
    if reason is not None:
        raise ValidationError({"node_specs": [cannot_run(said_of(reason.words))]})


DATA_FIELDS = ("train_dataset", "validation_dataset", "test_dataset")


def _verdicts(uses, algorithm) -> list[tuple[str, Dataset, validation.Verdict]]:
    """(field, data set, kept verdict) of each data set a draft or a job names."""
    return [
        (name, dataset, validation.verdict(dataset, algorithm))
        for name in DATA_FIELDS
        if (dataset := getattr(uses, name)) is not None
    ]


def _check_data(draft: JobDraft) -> list[Dataset]:
    """The kept verdict on every data set of the draft (no row is read here: a worker
    validated them, services/validation.py): a bad one is refused with its report;
    those still being validated are returned, for the job to wait for."""
    rejected: list[tuple[Dataset, dict]] = []
    errors: dict[str, list[str]] = {}
    waiting = []
    for name, dataset, found in _verdicts(draft, draft.algorithm):
        if found.state == "pending":
            waiting.append(dataset)
        elif found.state == "invalid":
            rejected.append((dataset, found.report))
            errors[name] = [
                _("The data set “%(name)s” has %(count)s problem(s); see the report below.")
                % {"name": dataset.name, "count": found.report.get("problem_count", 0)}
            ]
    if rejected:
        raise DataSetRejected(errors, rejected)
    return waiting


def create_job(user, project: Project, draft: JobDraft) -> Job:
    """Queue a new job (F1): checked, granted, announced. A job whose data is still
    being validated is queued all the same, waiting for the verdict."""
    check_draft(user, project, draft)
    waiting = _check_data(draft)
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.create(
            project=project,
            creator=user,
            access=Access.NONE,
            status=JobStatus.QUEUED,
            queued_at=now,
            waiting_for_data=bool(waiting),
            **draft.job_fields(),
        )
        JobNodeSpec.objects.bulk_create(
            JobNodeSpec(job=job, spec=spec, rank=rank) for rank, spec in enumerate(draft.node_specs)
        )
        access.share_new(job, draft.access)
        created = (
            say(gettext_noop("Cloned from job %(id)s"), id=draft.cloned_from.pk)
            if draft.cloned_from
            else say(gettext_noop("Job created"))
        )
        JobEvent.objects.create(
            job=job,
            kind=JobEvent.Kind.CREATED,
            actor=user,
            to_status=JobStatus.QUEUED,
            message=str(created),
            said=created.data(),
        )
        if draft.resume_from_step is not None:
            checkpoints.carry_history(draft.cloned_from, job, draft.resume_from_step)
            _note(job, RESUMES, id=draft.cloned_from.pk, step=draft.resume_from_step)
        if waiting:
            _note(job, WAITS_FOR_DATA, names=", ".join(f"“{d.name}”" for d in waiting))
            # its data may have been judged between the look above and this commit
            transaction.on_commit(lambda: release_waiting_jobs(Q(pk=job.pk)))
        _notify(job.pk, Change.CREATED)
    return job


RESUMES = gettext_noop("Goes on from job %(id)s's checkpoint at step %(step)d")
WAITS_FOR_DATA = gettext_noop("Waiting for data set %(names)s to be validated")
DATA_GOOD = gettext_noop("Its data was validated: it takes its place in the queue")
DATA_BAD = gettext_noop("The data set “%(name)s” has %(count)s problem(s); see its report")


def _note(job: Job, msgid: str, **params) -> None:
    said = say(msgid, **params)
    JobEvent.objects.create(job=job, kind=JobEvent.Kind.NOTE, message=str(said), said=said.data())


def release_jobs_of(dataset_id: int) -> None:
    """After a data set's verdict: the queued jobs that wait for it go on."""
    uses = Q(train_dataset=dataset_id) | Q(validation_dataset=dataset_id)
    release_waiting_jobs(uses | Q(test_dataset=dataset_id))


def release_waiting_jobs(which: Q | None = None) -> None:
    """Jobs waiting for their data (all of them, or ``which``) whose data sets are all
    judged: into the queue where every one is good, failed with the report of the
    first bad one otherwise; the others wait on."""
    jobs = Job.objects.filter(status=JobStatus.QUEUED, waiting_for_data=True)
    if which is not None:
        jobs = jobs.filter(which)
    for job in jobs.select_related("algorithm", *(f"{name}__scenario" for name in DATA_FIELDS)):
        verdicts = [(dataset, found) for _name, dataset, found in _verdicts(job, job.algorithm)]
        if any(found.state == "pending" for _dataset, found in verdicts):
            continue
        bad = next(((d, found) for d, found in verdicts if found.state == "invalid"), None)
        if bad is not None:
            dataset, found = bad
            reason = say(DATA_BAD, name=dataset.name, count=found.report.get("problem_count", 0))
            with contextlib.suppress(TransitionError):  # stopped or deleted meanwhile
                transition(job, JobStatus.FAILED, reason=reason, data={"dataset": dataset.pk})
            continue
        with transaction.atomic():
            released = Job.objects.filter(
                pk=job.pk, status=JobStatus.QUEUED, waiting_for_data=True
            ).update(waiting_for_data=False)
            if released:
                _note(job, DATA_GOOD)
                _notify(job.pk, Change.DATA_READY)


def draft_from(job: Job) -> JobDraft:
    """A clone's starting point (F3): the job's fields; the form re-checks them all."""
    return JobDraft(
        name=_("%(name)s-clone") % {"name": job.name},
        scenario=job.scenario,
        algorithm=job.algorithm,
        pretrained_model=job.pretrained_model,
        train_dataset=job.train_dataset,
        validation_dataset=job.validation_dataset,
        test_dataset=job.test_dataset,
        model_repo=job.model_repo,
        node_specs=job.ordered_node_specs(),
        duration=job.duration,
        access=job.access,
        priority=job.priority,
        parameters=dict(job.parameters),
        node_names=list(job.node_names),
        pool=job.pool,
        driver_version=job.driver_version,
        node_count=job.node_count,
        cloned_from=job,
    )


def _require(user, action: str, job: Job, as_operator: bool = False) -> None:
    """F9.4 for members; a site operator acting from the admin (whose own permissions
    let them in) may act on every job."""
    if as_operator and user.is_staff:
        return
    if not access.can(user, action, job):
        raise PermissionDenied


def _change_active(
    user, job: Job, field: str, value, *, refused: str, kind: str, message: Said, data: dict
) -> None:
    """Set `field` of a queued or running job, with its event and its signal."""
    with transaction.atomic():
        # Compare-and-set on the status: a job that just ended keeps its value.
        changed = Job.objects.filter(pk=job.pk, status__in=ACTIVE_STATUSES).update(**{field: value})
        if not changed:
            raise ValidationError(refused)
        setattr(job, field, value)
        JobEvent.objects.create(
            job=job, kind=kind, actor=user, message=str(message), said=message.data(), data=data
        )
        _notify(job.pk, Change(field))  # the field is the change: duration, priority


def change_duration(user, job: Job, duration: timedelta, *, as_operator: bool = False) -> None:
    """F8.1: a new duration moves the deadline of a queued or running job; the
    workload is not touched, so nothing restarts."""
    _require(user, "change_duration", job, as_operator)
    if duration <= timedelta(0):
        raise ValidationError(_("The duration must be positive."))
    old = job.duration
    _change_active(
        user,
        job,
        "duration",
        duration,
        refused=_("Only a queued or running job's duration can be changed."),
        kind=JobEvent.Kind.DURATION,
        message=say(
            gettext_noop("Duration changed from %(old)s to %(new)s"),
            old=texts.duration(old),
            new=texts.duration(duration),
        ),
        data={"from_seconds": old.total_seconds(), "to_seconds": duration.total_seconds()},
    )


def change_priority(user, job: Job, priority: int, *, as_operator: bool = False) -> None:
    """F2: a queued job's new priority re-orders the queue at the next admission pass."""
    _require(user, "change_priority", job, as_operator)
    priority = Priority(priority)
    old = job.priority
    _change_active(
        user,
        job,
        "priority",
        priority,
        refused=_("Only a queued or running job's priority can be changed."),
        kind=JobEvent.Kind.PRIORITY,
        message=say(
            gettext_noop("Priority changed from %(old)s to %(new)s"),
            old=texts.Choice("priority", int(old)),
            new=texts.Choice("priority", int(priority)),
        ),
        data={"from": old, "to": int(priority)},
    )


def stop_job(user, job: Job, *, as_operator: bool = False) -> bool:
    """F8.2: stop through the state machine; False if the job had already stopped."""
    _require(user, "stop", job, as_operator)
    reason = (
        say(gettext_noop("stopped by an operator"))
        if as_operator
        else say(gettext_noop("Stopped by %(user)s"), user=user.get_username())
    )
    try:
        with transaction.atomic():
            changed = transition(job, JobStatus.STOPPED, actor=user, reason=reason)
            if changed:
                _notify(job.pk, Change.STOPPED)
    except TransitionError as exc:
        raise ValidationError(str(exc)) from exc
    return changed


def requeue_job(user, job: Job) -> bool:
    """An operator puts a running job back in the queue, at its place. Its workload is
    torn down first, never after (a later teardown could hit the job's next launch),
    by a task (scheduler.tasks.requeue_workload) rather than in the request: settling
    leaves a job marked so alone, and would otherwise fail it from its dying workers.
    False if a requeue of it was asked for already."""
    _require(user, "stop", job, as_operator=True)
    with transaction.atomic():
        marked = Job.objects.filter(
            pk=job.pk, status=JobStatus.RUNNING, requeue_requested_at__isnull=True
        ).update(requeue_requested_at=timezone.now())
        if not marked:
            job.refresh_from_db(fields=["status"])
            if job.status != JobStatus.RUNNING:
                raise ValidationError(_("Only a running job can be put back in the queue."))
            return False
        note = say(
            gettext_noop(
                "An operator asked to put it back in the queue; its workload is torn down first."
            )
        )
        JobEvent.objects.create(
            job=job, kind=JobEvent.Kind.NOTE, actor=user, message=str(note), said=note.data()
        )
        _notify(job.pk, Change.REQUEUE)
    return True


def delete_job(user, job: Job) -> None:
    """F8.3: a queued or running job is stopped first, so its workload is torn down."""
    _require(user, "delete", job)
    _delete(user, job)


def _delete(user, job: Job) -> None:
    with transaction.atomic():
        if job.status in ACTIVE_STATUSES:
            try:
                transition(job, JobStatus.STOPPED, actor=user, reason=say(gettext_noop("Deleted")))
            except TransitionError:
                job.refresh_from_db(fields=["status"])  # it ended meanwhile: delete it as is
        job_id = job.pk
        job.delete()
        _notify(job_id, Change.DELETED)


def delete_jobs(user, jobs) -> int:
    """Batch delete (F8.3): only the jobs the user may delete, all or none."""
    deletable = list(access.restrict(jobs, user, "delete"))
    with transaction.atomic():
        for job in deletable:
            _delete(user, job)  # allowed: the restriction above asked once for all
    return len(deletable)
