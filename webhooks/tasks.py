"""Celery tasks of the webhooks: they take ids, are idempotent, and ignore results; the
delivery's row is the truth (webhooks/services.py).

`deliver` runs on the "webhooks" queue (config/settings.py CELERY_TASK_ROUTES): it
waits on other people's servers, which must never hold up admission. It is not
retried by Celery: a failed attempt schedules the next one itself, with the
delivery's own backoff, and the sweep takes up what a lost message left.
"""

from __future__ import annotations

from celery import shared_task

from webhooks import services


@shared_task(
    ignore_result=True,
    acks_late=True,
    soft_time_limit=services.soft_time_limit(),
    time_limit=services.time_limit(),
)
def deliver(delivery_id: int) -> None:
    services.attempt(delivery_id)


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=50, time_limit=60)
def sweep_deliveries() -> None:
    """Every minute (beat): re-queue deliveries whose message was lost or whose worker died."""
    services.sweep()
