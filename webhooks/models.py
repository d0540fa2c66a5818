"""A project's webhooks and each message sent to one (docs/webhooks.md)."""

from __future__ import annotations

import base64
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Project
from finetune.models.data import Reasoned

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # Standard Webhooks asks for 24 to 64


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes one: ``whsec_`` and base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


class Event(models.TextChoices):
    JOB_QUEUED = "job.queued", _("A job is queued")
    JOB_STARTED = "job.started", _("A job starts running")
    JOB_SUCCEEDED = "job.succeeded", _("A job succeeds")
    JOB_FAILED = "job.failed", _("A job fails")
    JOB_STOPPED = "job.stopped", _("A job is stopped")
    JOB_EXPIRED = "job.expired", _("A job expires")
    MODEL_VERSION_CREATED = "model_version.created", _("A model version is created")
    # sent by the "Send test event" button only: nobody subscribes to it
    TEST = "webhook.test", _("Test event")


SUBSCRIBABLE = [(value, label) for value, label in Event.choices if value != Event.TEST]


class Webhook(models.Model):
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="webhooks", verbose_name=_("project")
    )
    url = models.URLField(_("URL"), max_length=2000)
    description = models.CharField(_("description"), max_length=200, blank=True)
    # Kept as it is, not hashed: every message is signed with it.
    secret = models.CharField(_("secret"), max_length=100, default=new_secret, editable=False)
    # The secret before the last rotation: messages are signed with both until then, so
    # a receiver has time to take the new one (Standard Webhooks' rotation).
    previous_secret = models.CharField(max_length=100, blank=True, editable=False)
    previous_secret_until = models.DateTimeField(null=True, blank=True, editable=False)
    events = models.JSONField(_("events"), default=list)
    enabled = models.BooleanField(_("enabled"), default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("created by"),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("webhook")
        verbose_name_plural = _("webhooks")
        indexes = [models.Index(fields=["project", "-created_at"], name="webhook_project_recent")]

    def __str__(self) -> str:
        return self.description or self.url

    def clean(self) -> None:
        # Here rather than in one form: the page's form and the admin's both refuse an
        # address the deliveries would refuse anyway.
        from webhooks.addresses import check_url

        if self.url:
            check_url(self.url, field="url")

    def event_labels(self) -> list[str]:
        labels = dict(Event.choices)
        return [str(labels.get(event, event)) for event in self.events]


class WebhookDelivery(Reasoned):
    """One message to one webhook, and how its latest attempt went. Every attempt of
    it (a retry, a resend) carries the same message id and body, as Standard Webhooks
    asks: a receiver that saw it before can tell. `error` (from Reasoned) says why the
    latest attempt failed, in each reader's language."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        DELIVERING = "delivering", _("Delivering")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    webhook = models.ForeignKey(
        Webhook, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("webhook")
    )
    event_type = models.CharField(_("event"), max_length=40, choices=Event.choices)
    # What happened, once per webhook: the same event announced twice is sent once
    # (webhooks/receivers.py says what each key is).
    event_key = models.CharField(max_length=100, editable=False)
    message_id = models.CharField(
        _("message id"), max_length=40, unique=True, default=new_message_id, editable=False
    )
    payload = models.JSONField(_("payload"))
    status = models.CharField(
        _("status"), max_length=12, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    last_attempt_at = models.DateTimeField(_("last attempt"), null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(_("response code"), null=True, blank=True)
    response_excerpt = models.TextField(_("response"), blank=True)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        constraints = [
            models.UniqueConstraint(
                fields=["webhook", "event_key"], name="webhookdelivery_once_per_event"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "delivering", "succeeded", "failed"]),
                name="webhookdelivery_status_valid",
            ),
        ]
        indexes = [
            # a webhook's page lists its deliveries, newest first
            models.Index(fields=["webhook", "-created_at"], name="delivery_webhook_recent"),
            # the sweep looks for the due and the stuck
            models.Index(fields=["status", "next_attempt_at"], name="delivery_sweep"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.message_id}"
