"""Data sets and model repositories (保存模型地址) that jobs use."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Access, Project
from finetune.models.catalog import Scenario


def access_field(*, chosen: bool = False) -> models.CharField:
    """Others' access of what a member shares (F9.1): `access` is the level that applies,
    none while the project's sharing is off (F9.3); `chosen_access` the level its
    creator chose, applied once more when sharing is turned on again."""
    if chosen:
        return models.CharField(
            _("others' access chosen"),
            max_length=8,
            choices=Access.choices,
            default=Access.NONE,
            editable=False,
        )
    return models.CharField(
        _("others' access"), max_length=8, choices=Access.choices, default=Access.NONE
    )


class ProjectResource(models.Model):
    """Something a project member creates and may share with the others (F9)."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="%(class)ss", verbose_name=_("project")
    )
    creator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("creator"),
    )
    name = models.CharField(_("name"), max_length=128)
    access = access_field()
    chosen_access = access_field(chosen=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.name


class Dataset(ProjectResource):
    class Format(models.TextChoices):
        # The values are the trainer's format names (trainer.datavalidation.FORMATS).
        PRETRAIN = "pretrain", _('Plain text ({"text"})')
        SFT_MESSAGES = "sft_messages", _('Chat messages ({"messages"})')
        SFT_ALPACA = "sft_alpaca", _('Alpaca ({"instruction", "input", "output"})')
        PREFERENCE = "preference", _('Preference pairs ({"prompt", "chosen", "rejected"})')
        PROMPTS = "prompts", _('Prompts ({"prompt"})')
        T2I = "t2i", _("Images with metadata.jsonl captions")

    class Validation(models.TextChoices):
        PENDING = "pending", _("Waiting to be validated")
        VALIDATING = "validating", _("Validating")
        VALID = "valid", _("Valid")
        INVALID = "invalid", _("Invalid")

    scenario = models.ForeignKey(
        Scenario, on_delete=models.PROTECT, related_name="datasets", verbose_name=_("scenario")
    )
    format = models.CharField(_("format"), max_length=20, choices=Format.choices)
    location = models.CharField(_("location"), max_length=500)
    size_bytes = models.BigIntegerField(_("size"), default=0)
    record_count = models.PositiveIntegerField(_("records"), default=0)
    validation_status = models.CharField(
        _("validation"), max_length=10, choices=Validation.choices, default=Validation.PENDING
    )
    validation_report = models.JSONField(_("validation report"), default=dict, blank=True)
    validated_at = models.DateTimeField(_("validated"), null=True, blank=True)
    # Validation runs in a worker (finetune/services/validation.py). Each request counts
    # one up, and only the run of the latest request writes its verdict.
    validation_requests = models.PositiveIntegerField(
        _("validation requests"), default=0, editable=False
    )
    validation_progress = models.FloatField(_("validation progress"), null=True, blank=True)
    # The last sign of life of a validation under way: one long silent is run again.
    validation_beat_at = models.DateTimeField(null=True, blank=True, editable=False)
    # What the files were when validated and what each came to (trainer/fingerprint.py).
    validation_fingerprint = models.JSONField(default=dict, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("data set")
        verbose_name_plural = _("data sets")
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="dataset_unique_name"),
            models.CheckConstraint(
                condition=models.Q(access__in=Access.values), name="dataset_access_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(size_bytes__gte=0), name="dataset_size_not_negative"
            ),
        ]
        indexes = [models.Index(fields=["project", "scenario"])]

    @property
    def being_validated(self) -> bool:
        """Waiting for a worker's verdict, or under one (finetune/services/validation.py)."""
        return self.validation_status in (self.Validation.PENDING, self.Validation.VALIDATING)


class ModelRepo(ProjectResource):
    scenario = models.ForeignKey(
        Scenario, on_delete=models.PROTECT, related_name="model_repos", verbose_name=_("scenario")
    )
    location = models.CharField(_("location"), max_length=500)
    description = models.TextField(_("description"), blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("model repository")
        verbose_name_plural = _("model repositories")
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="modelrepo_unique_name"),
            models.CheckConstraint(
                condition=models.Q(access__in=Access.values), name="modelrepo_access_valid"
            ),
        ]
        indexes = [models.Index(fields=["project", "scenario"])]


class ModelVersion(models.Model):
    """One trained model saved into a repo: each successful job adds one."""

    repo = models.ForeignKey(
        ModelRepo,
        on_delete=models.CASCADE,
        related_name="versions",
        verbose_name=_("model repository"),
    )
    number = models.PositiveIntegerField(_("version"))
    location = models.CharField(_("location"), max_length=500)
    job = models.ForeignKey(
        "finetune.Job",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("job"),
    )
    manifest = models.JSONField(_("manifest"), default=dict, blank=True)
    metrics = models.JSONField(_("metrics summary"), default=dict, blank=True)
    # An export (a LoRA merged into its base) is a version of its own, made from another.
    derived_from = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="derived",
        verbose_name=_("derived from"),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["repo", "-number"]
        verbose_name = _("model version")
        verbose_name_plural = _("model versions")
        constraints = [
            models.UniqueConstraint(fields=["repo", "number"], name="modelversion_unique_number"),
            models.CheckConstraint(
                condition=models.Q(number__gte=1), name="modelversion_number_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.repo.name} v{self.number}"


class Reasoned(models.Model):
    """Why a request failed, said in each reader's language (finetune/texts.py)."""

    error = models.TextField(_("reason"), blank=True)
    error_said = models.JSONField(_("reason, as said"), null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def reason_text(self) -> str:
        from finetune.texts import render

        return render(self.error_said, self.error)


class ModelWork(Reasoned):
    """Work on a model version that a worker carries out in a trainer process of its own
    (finetune/services/modelwork.py): a merge, an evaluation."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting for a worker")
        RUNNING = "running", _("Under way")
        SUCCEEDED = "succeeded", _("Done")
        FAILED = "failed", _("Failed")

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("requested by"),
    )
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.PENDING
    )
    progress = models.FloatField(_("progress"), default=0.0)
    # the trainer's own words on a failure nobody foresaw, shown as a log line
    detail = models.TextField(_("detail"), blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    beat_at = models.DateTimeField(_("last sign of life"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]

    @property
    def active(self) -> bool:
        return self.status in (self.Status.PENDING, self.Status.RUNNING)


class ModelExport(ModelWork):
    """One request to merge a LoRA version into its base model (finetune/services/exports.py):
    carried out by a worker of the `export` queue, it ends as a new version."""

    source = models.ForeignKey(
        ModelVersion,
        on_delete=models.CASCADE,
        related_name="exports",
        verbose_name=_("model version"),
    )
    result = models.OneToOneField(
        ModelVersion,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="made_by_export",
        verbose_name=_("exported version"),
    )

    class Meta(ModelWork.Meta):
        verbose_name = _("model export")
        verbose_name_plural = _("model exports")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__gte=0) & models.Q(progress__lte=1),
                name="modelexport_progress_range",
            ),
            # one export of a version under way at a time: a second click waits for it
            models.UniqueConstraint(
                fields=["source"],
                condition=models.Q(status__in=["pending", "running"]),
                name="modelexport_one_active_per_version",
            ),
        ]

    def __str__(self) -> str:
        return f"export {self.pk} of {self.source}"


class ModelEvaluation(ModelWork):
    """A version run on a data set of its scenario, beside its base model
    (finetune/services/evaluations.py); its figures and samples kept on the version."""

    version = models.ForeignKey(
        ModelVersion,
        on_delete=models.CASCADE,
        related_name="evaluations",
        verbose_name=_("model version"),
    )
    dataset = models.ForeignKey(
        Dataset,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("data set"),
    )
    dataset_name = models.CharField(_("data set"), max_length=128)
    results = models.JSONField(_("results"), default=dict, blank=True)

    class Meta(ModelWork.Meta):
        verbose_name = _("model evaluation")
        verbose_name_plural = _("model evaluations")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__gte=0) & models.Q(progress__lte=1),
                name="modelevaluation_progress_range",
            ),
        ]

    def __str__(self) -> str:
        return f"evaluation {self.pk} of {self.version} on {self.dataset_name}"


class PlaygroundRun(Reasoned):
    """One question to a model version in the playground (finetune/services/playground.py):
    answered by a worker of the `inference` queue, streamed to the page through the cache.
    The row says where it stands (its place in the line, why it failed); the words and
    images themselves live in the cache for a while, never in the database."""

    class Kind(models.TextChoices):
        CHAT = "chat", _("Chat")
        IMAGE = "image", _("Image")

    class Status(models.TextChoices):
        QUEUED = "queued", _("Waiting for a worker")
        RUNNING = "running", _("Answering")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    version = models.ForeignKey(
        ModelVersion,
        on_delete=models.CASCADE,
        related_name="playground_runs",
        verbose_name=_("model version"),
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", verbose_name=_("user")
    )
    kind = models.CharField(_("kind"), max_length=8, choices=Kind.choices)
    status = models.CharField(
        _("status"), max_length=8, choices=Status.choices, default=Status.QUEUED
    )
    request = models.JSONField(_("request"), default=dict)
    created_at = models.DateTimeField(_("created"), auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("playground run")
        verbose_name_plural = _("playground runs")
        indexes = [models.Index(fields=["status", "created_at"], name="playground_waiting")]

    def __str__(self) -> str:
        return f"playground {self.pk} of {self.version}"
