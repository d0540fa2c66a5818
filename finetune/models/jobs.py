"""A fine-tuning job (大模型精调) and everything that happened to it."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from accounts.models import Access, Project
from finetune.models.catalog import Algorithm, PretrainedModel, Scenario
from finetune.models.data import Dataset, ModelRepo, ModelVersion, access_field
from finetune.texts import render


class JobStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    FAILED = "failed", _("Error")
    STOPPED = "stopped", _("Stopped")
    EXPIRED = "expired", _("Expired")
    SUCCEEDED = "succeeded", _("Succeeded")


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
TERMINAL_STATUSES = (
    JobStatus.FAILED,
    JobStatus.STOPPED,
    JobStatus.EXPIRED,
    JobStatus.SUCCEEDED,
)


class Priority(models.IntegerChoices):
    LOW = 10, _("Low")
    NORMAL = 20, _("Normal")
    HIGH = 30, _("High")
    URGENT = 40, _("Urgent")


class Job(models.Model):
    name = models.CharField(_("name"), max_length=128)
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="jobs", verbose_name=_("project")
    )
    creator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="jobs",
        verbose_name=_("creator"),
    )
    access = access_field()
    chosen_access = access_field(chosen=True)
    priority = models.IntegerField(_("priority"), choices=Priority.choices, default=Priority.NORMAL)

    scenario = models.ForeignKey(
        Scenario, on_delete=models.PROTECT, related_name="jobs", verbose_name=_("scenario")
    )
    algorithm = models.ForeignKey(
        Algorithm, on_delete=models.PROTECT, related_name="jobs", verbose_name=_("algorithm")
    )
    pretrained_model = models.ForeignKey(
        PretrainedModel, on_delete=models.PROTECT, related_name="jobs", verbose_name=_("base model")
    )
    train_dataset = models.ForeignKey(
        Dataset,
        on_delete=models.PROTECT,
        related_name="training_jobs",
        verbose_name=_("training data"),
    )
    validation_dataset = models.ForeignKey(
        Dataset,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="validation_jobs",
        verbose_name=_("validation data"),
    )
    test_dataset = models.ForeignKey(
        Dataset,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="test_jobs",
        verbose_name=_("test data"),
    )
    parameters = models.JSONField(_("training parameters"), default=dict, blank=True)
    model_repo = models.ForeignKey(
        ModelRepo,
        on_delete=models.PROTECT,
        related_name="jobs",
        verbose_name=_("save-model address"),
    )

    node_specs = models.ManyToManyField(
        "scheduler.NodeSpec",
        through="JobNodeSpec",
        related_name="jobs",
        verbose_name=_("node specs"),
    )
    spec_in_use = models.ForeignKey(
        "scheduler.NodeSpec",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("node spec in use"),
    )
    node_names = models.JSONField(_("node names"), default=list, blank=True)
    pool = models.ForeignKey(
        "scheduler.ResourcePool",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="jobs",
        verbose_name=_("dedicated resource pool"),
    )
    driver_version = models.CharField(_("driver version"), max_length=64, blank=True)
    node_count = models.PositiveIntegerField(_("node count"), default=1)
    duration = models.DurationField(_("duration"))

    status = models.CharField(
        _("status"), max_length=12, choices=JobStatus.choices, default=JobStatus.QUEUED
    )
    status_reason = models.TextField(_("reason"), blank=True)
    # What the reason says, to say it in each reader's language (finetune/texts.py).
    status_said = models.JSONField(_("reason, as said"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    queued_at = models.DateTimeField(_("queued"), null=True, blank=True)
    # Queued, but a data set of it is still being validated: the planner passes it
    # by until its data is found good (or fails it with the report).
    waiting_for_data = models.BooleanField(_("validating data"), default=False)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    # The latest progress the trainer reported (0..1) and when it expects to end;
    # kept on the row so the list shows a bar without reading the metrics (F7.1).
    progress = models.FloatField(_("progress"), null=True, blank=True, editable=False)
    eta_at = models.DateTimeField(_("expected end"), null=True, blank=True, editable=False)

    run_command = models.TextField(_("run command"), blank=True)
    placement = models.JSONField(
        _("placement"), default=list, blank=True, help_text=_("Node of each worker, by rank.")
    )
    cloned_from = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="clones",
        verbose_name=_("cloned from"),
    )
    # a clone that goes on from cloned_from's checkpoint at this step (F3, resume)
    resume_from_step = models.PositiveIntegerField(_("resumes from step"), null=True, blank=True)
    output_version = models.ForeignKey(
        ModelVersion,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("model version"),
    )
    # key-value pairs a script attached through the API (the OpenAI-compatible metadata)
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    report_token_hash = models.CharField(max_length=128, blank=True, editable=False)
    # The last sign of life of the worker launching it (scheduler/launching.py): a job
    # admitted whose launcher stopped beating, with no workload to show, is requeued.
    launch_beat_at = models.DateTimeField(_("launcher's last beat"), null=True, editable=False)
    # An operator asked to put it back in the queue: its workload is being torn down
    # (scheduler.tasks.requeue_workload); settling leaves it alone meanwhile.
    requeue_requested_at = models.DateTimeField(_("requeue requested"), null=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("fine-tuning job")
        verbose_name_plural = _("fine-tuning jobs")
        permissions = [
            ("clone_job", _("Can clone job")),
            ("change_duration_job", _("Can change the duration of job")),
            ("change_priority_job", _("Can change the priority of job")),
            ("stop_job", _("Can stop job")),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(node_count__gte=1), name="job_node_count_min"
            ),
            models.CheckConstraint(
                condition=models.Q(duration__gt=timedelta(0)), name="job_duration_positive"
            ),
            # F1.13: pinning to node names excludes a pool and a driver version.
            models.CheckConstraint(
                condition=models.Q(node_names=[])
                | (models.Q(pool__isnull=True) & models.Q(driver_version="")),
                name="job_node_names_exclusive",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=JobStatus.values), name="job_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(access__in=Access.values), name="job_access_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "-priority", "queued_at"], name="job_queue_order"),
            models.Index(fields=["project", "-created_at"], name="job_project_recent"),
            models.Index(fields=["creator", "-created_at"], name="job_creator_recent"),
            # the latest settled jobs tell how much of its duration a job runs
            # (scheduler.snapshot.share, every plan)
            models.Index(fields=["-finished_at"], name="job_recently_finished"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def reason_text(self) -> str:
        """The status reason in the reader's language."""
        return render(self.status_said, self.status_reason)

    @property
    def deadline(self) -> datetime | None:
        """When a running job expires (F5); changing the duration moves it (F8.1)."""
        if self.started_at is None:
            return None
        return self.started_at + self.duration

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def ordered_node_specs(self):
        return [choice.spec for choice in self.spec_choices.select_related("spec")]


class JobNodeSpec(models.Model):
    """One entry in a job's ordered list of acceptable node specs (F1.12, F6)."""

    job = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="spec_choices", verbose_name=_("job")
    )
    spec = models.ForeignKey(
        "scheduler.NodeSpec",
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("node spec"),
    )
    rank = models.PositiveSmallIntegerField(_("order"))

    class Meta:
        ordering = ["job", "rank"]
        verbose_name = _("node spec choice")
        verbose_name_plural = _("node spec choices")
        constraints = [
            models.UniqueConstraint(fields=["job", "rank"], name="jobnodespec_unique_rank"),
            models.UniqueConstraint(fields=["job", "spec"], name="jobnodespec_unique_spec"),
        ]

    def __str__(self) -> str:
        return f"{self.job} #{self.rank}: {self.spec}"


class JobEvent(models.Model):
    class Source(models.TextChoices):
        PLATFORM = "platform", _("Platform")
        CLUSTER = "cluster", _("Cluster")

    class Kind(models.TextChoices):
        CREATED = "created", pgettext_lazy("job event", "Created")
        STATUS = "status", _("Status changed")
        DURATION = "duration", _("Duration changed")
        PRIORITY = "priority", _("Priority changed")
        LAUNCH = "launch", _("Workload launched")
        CLUSTER = "cluster", _("Cluster event")
        NOTE = "note", _("Note")

    job = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="events", verbose_name=_("job")
    )
    time = models.DateTimeField(_("time"), auto_now_add=True, db_index=True)
    source = models.CharField(
        _("source"), max_length=10, choices=Source.choices, default=Source.PLATFORM
    )
    kind = models.CharField(_("kind"), max_length=12, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("by"),
    )
    from_status = models.CharField(_("from"), max_length=12, blank=True, choices=JobStatus.choices)
    to_status = models.CharField(_("to"), max_length=12, blank=True, choices=JobStatus.choices)
    message = models.TextField(_("message"), blank=True)
    # What the message says, to say it in each reader's language (finetune/texts.py).
    said = models.JSONField(_("message, as said"), null=True, blank=True)
    data = models.JSONField(_("details"), default=dict, blank=True)

    class Meta:
        ordering = ["-time", "-id"]
        verbose_name = _("job event")
        verbose_name_plural = _("job events")
        indexes = [models.Index(fields=["job", "-time"], name="jobevent_job_recent")]

    def __str__(self) -> str:
        return f"{self.job_id} {self.get_kind_display()} {self.text}"[:120]

    @property
    def text(self) -> str:
        """The message in the reader's language."""
        return render(self.said, self.message)
