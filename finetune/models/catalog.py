"""The catalog: scenarios, built-in algorithms and pretrained base models.

The trainer package is the single source of algorithms; `manage.py
sync_algorithms` copies them here so the pages and the scheduler can query them.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from finetune.texts import in_page_language


class TaskType(models.TextChoices):
    LLM = "llm", _("Large language model")
    T2I = "t2i", _("Text-to-image model")


class BilingualNameMixin:
    """`display_name` in the active language: 简体中文 when the page is in Chinese."""

    name: str
    name_zh: str

    @property
    def display_name(self) -> str:
        return in_page_language(self.name, self.name_zh)


class Scenario(BilingualNameMixin, models.Model):
    code = models.CharField(_("code"), max_length=40, unique=True)  # e.g. "llm/sft"
    task_type = models.CharField(_("task type"), max_length=8, choices=TaskType.choices)
    name = models.CharField(_("name (English)"), max_length=100)
    name_zh = models.CharField(_("name (Chinese)"), max_length=100)
    sort_order = models.PositiveSmallIntegerField(_("order"), default=0)

    class Meta:
        ordering = ["task_type", "sort_order", "code"]
        verbose_name = _("scenario")
        verbose_name_plural = _("scenarios")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(task_type__in=TaskType.values), name="scenario_task_type_valid"
            )
        ]

    def __str__(self) -> str:
        return self.display_name


class Algorithm(BilingualNameMixin, models.Model):
    code = models.SlugField(_("code"), max_length=60, unique=True)
    scenario = models.ForeignKey(
        Scenario, on_delete=models.PROTECT, related_name="algorithms", verbose_name=_("scenario")
    )
    name = models.CharField(_("name (English)"), max_length=100)
    name_zh = models.CharField(_("name (Chinese)"), max_length=100)
    description = models.TextField(_("description (English)"), blank=True)
    description_zh = models.TextField(_("description (Chinese)"), blank=True)
    parameters_schema = models.JSONField(
        _("parameters schema"), default=dict, help_text=_("JSON Schema of the parameters.")
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    synced_at = models.DateTimeField(_("synced"), null=True, blank=True)

    class Meta:
        ordering = ["scenario__sort_order", "code"]
        verbose_name = _("algorithm")
        verbose_name_plural = _("algorithms")

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_description(self) -> str:
        return in_page_language(self.description, self.description_zh)


class PretrainedModel(models.Model):
    name = models.CharField(_("name"), max_length=100, unique=True)
    task_type = models.CharField(_("task type"), max_length=8, choices=TaskType.choices)
    family = models.CharField(_("family"), max_length=60, help_text=_("e.g. llama, qwen, sd"))
    location = models.CharField(
        _("location"), max_length=500, help_text=_("Path under the data root, or absolute.")
    )
    description = models.TextField(_("description"), blank=True)
    parameter_count = models.BigIntegerField(_("parameters"), null=True, blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["task_type", "name"]
        verbose_name = _("pretrained model")
        verbose_name_plural = _("pretrained models")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(task_type__in=TaskType.values), name="pretrained_task_type_valid"
            )
        ]

    def __str__(self) -> str:
        return self.name
