"""What a job made without the create form gets for the fields the form asks for: the
OpenAI-compatible API (api/openai/) names only a base model, data and a few
hyper-parameters; its node spec, priority, duration and save address come from here."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Project
from finetune.models.data import ModelRepo
from finetune.models.jobs import Priority


class ProjectDefaults(models.Model):
    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, related_name="defaults", verbose_name=_("project")
    )
    node_spec = models.ForeignKey(
        "scheduler.NodeSpec",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("node spec"),
        help_text=_("Empty: the first enabled node spec a node of the cluster can hold."),
    )
    node_count = models.PositiveSmallIntegerField(_("node count"), default=1)
    priority = models.IntegerField(_("priority"), choices=Priority.choices, default=Priority.NORMAL)
    duration_hours = models.PositiveIntegerField(
        _("duration (hours)"), null=True, blank=True, help_text=_("Empty: the site's default.")
    )
    model_repos = models.ManyToManyField(
        ModelRepo,
        blank=True,
        related_name="+",
        verbose_name=_("save-model addresses"),
        help_text=_(
            "At most one per scenario. Where a scenario has none, a job is saved into the "
            "newest address of the scenario its creator may write to, or a new one of theirs."
        ),
    )

    class Meta:
        verbose_name = _("project defaults")
        verbose_name_plural = _("project defaults")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(node_count__gte=1), name="projectdefaults_node_count_min"
            ),
        ]

    def __str__(self) -> str:
        return str(self.project)
