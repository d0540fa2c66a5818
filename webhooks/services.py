"""A delivery's life: recorded once per event, tried, retried with backoff, given up.

A delivery is pending until a worker claims it with a compare-and-set on its status
and attempt count (pending -> delivering, attempts + 1), so two workers given the
same message (a retry and the sweep's, a broker's redelivery) cannot both send it.
The outcome is written with the same guard: an attempt that the sweep gave up on
as stuck writes nothing. The database row is the truth; a Celery message only says
"look at it now" (STYLE.md).
"""

from __future__ import annotations

import functools
import logging
import random
import uuid
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from config.celery import enqueue
from finetune.texts import say, split
from webhooks import payloads, sending
from webhooks.addresses import check_url
from webhooks.models import Event, Webhook, WebhookDelivery, new_secret

logger = logging.getLogger(__name__)
Status = WebhookDelivery.Status

#: Standard Webhooks' recommended waits between attempts, after the first: 5 s, 5 min,
#: 30 min, 2 h, 5 h, 10 h, 10 h (then 10 h again where more attempts are allowed).
#: Scaled so the first is JINGTIAO_WEBHOOK_RETRY_BASE_SECONDS.
SCHEDULE = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
JITTER = 0.2  # +-20%: receivers that failed together are not all retried together
#: How long a rotated-out secret still signs, beside the new one.
ROTATION_OVERLAP = timedelta(hours=24)
#: The sweep leaves alone what became due this recently: its own message is on its way.
SWEEP_GRACE = timedelta(seconds=60)
SWEEP_BATCH = 500


def soft_time_limit() -> int:
    """An attempt waits at most the timeout to connect, to send and to read."""
    return 3 * settings.JINGTIAO_WEBHOOK_TIMEOUT_SECONDS + 10


def time_limit() -> int:
    return soft_time_limit() + 10


def stuck_after() -> timedelta:
    """A delivery delivering longer than this was left by a worker that died: by then a
    live attempt has been killed by its time limit."""
    return timedelta(seconds=time_limit() + 60)


def retry_delay(attempts: int) -> float:
    """Seconds to wait after attempt number `attempts` failed."""
    base = SCHEDULE[min(attempts, len(SCHEDULE)) - 1]
    scale = settings.JINGTIAO_WEBHOOK_RETRY_BASE_SECONDS / SCHEDULE[0]
    return base * scale * random.uniform(1 - JITTER, 1 + JITTER)


# --- recording --------------------------------------------------------------------------


def subscribed(webhooks, event: str) -> list[Webhook]:
    """The enabled ones among `webhooks` that want `event` (filtered here, not in SQL:
    the embedded run's SQLite cannot look inside a JSON list)."""
    return [hook for hook in webhooks.filter(enabled=True) if event in hook.events]


def record(webhooks: list[Webhook], event: str, key: str, payload: dict) -> list[int]:
    """A delivery of `payload` to each of `webhooks`, once per `key`: the same event
    recorded again (a signal sent twice) adds nothing. Each new one is queued on
    commit. Returns the ids of those added."""
    added = []
    with transaction.atomic():
        for hook in webhooks:
            delivery, created = WebhookDelivery.objects.get_or_create(
                webhook=hook,
                event_key=key,
                defaults={
                    "event_type": event,
                    "payload": payload,
                    "next_attempt_at": timezone.now(),
                },
            )
            if created:
                added.append(delivery.pk)
                _enqueue_on_commit(delivery.pk)
    return added


def send_test(webhook: Webhook) -> WebhookDelivery:
    """A `webhook.test` message to `webhook`, queued on commit."""
    now = timezone.now()
    payload = payloads.message(Event.TEST, now, payloads.test_event_data(webhook))
    with transaction.atomic():
        delivery = WebhookDelivery.objects.create(
            webhook=webhook,
            event_type=Event.TEST,
            event_key=f"test:{uuid.uuid4().hex}",  # each press is an event of its own
            payload=payload,
            next_attempt_at=now,
        )
        _enqueue_on_commit(delivery.pk)
    return delivery


def resend(delivery: WebhookDelivery) -> bool:
    """Try the message once more, now, with its id and body: pending again and queued.
    False while an attempt is under way (its outcome is yet to come)."""
    with transaction.atomic():
        moved = (
            WebhookDelivery.objects.filter(pk=delivery.pk)
            .exclude(status=Status.DELIVERING)
            .update(status=Status.PENDING, next_attempt_at=timezone.now())
        )
        if moved:
            _enqueue_on_commit(delivery.pk)
    return bool(moved)


def rotate_secret(webhook: Webhook) -> None:
    """A new secret; the old one keeps signing beside it for ROTATION_OVERLAP."""
    webhook.previous_secret = webhook.secret
    webhook.previous_secret_until = timezone.now() + ROTATION_OVERLAP
    webhook.secret = new_secret()
    webhook.save(update_fields=["secret", "previous_secret", "previous_secret_until"])


def secrets_of(webhook: Webhook, now: datetime) -> list[str]:
    found = [webhook.secret]
    until = webhook.previous_secret_until
    if webhook.previous_secret and until is not None and until > now:
        found.append(webhook.previous_secret)
    return found


# --- attempts ---------------------------------------------------------------------------


def attempt(delivery_id: int) -> None:
    """Claim the delivery if it is due, send it, and write down how it went (a retry
    queued, or given up after JINGTIAO_WEBHOOK_MAX_ATTEMPTS). Idempotent: a delivery
    not pending, or not due yet, is left to whoever holds it or to its own message."""
    now = timezone.now()
    seen = WebhookDelivery.objects.filter(pk=delivery_id, status=Status.PENDING).first()
    if seen is None:
        return
    if seen.next_attempt_at is not None and seen.next_attempt_at > now + timedelta(seconds=1):
        return  # an early duplicate: the retry's own message comes at its time
    number = seen.attempts + 1
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=Status.PENDING, attempts=seen.attempts
    ).update(
        status=Status.DELIVERING,
        attempts=number,
        last_attempt_at=now,
        next_attempt_at=now + stuck_after(),
    )
    if not claimed:
        return  # another worker took it
    delivery = WebhookDelivery.objects.select_related("webhook").get(pk=delivery_id)
    outcome, final = _send(delivery, now)
    _finish(delivery, number, outcome, final)


def _send(delivery: WebhookDelivery, now: datetime) -> tuple[sending.Outcome, bool]:
    """The outcome of one attempt, and whether no retry could fare better."""
    webhook = delivery.webhook
    if not webhook.enabled:
        return sending.Outcome(False, error=say(gettext_noop("The webhook is turned off."))), True
    try:
        # again, now: the name may resolve elsewhere than when the URL was saved
        target = check_url(webhook.url)
    except ValidationError as exc:
        refused = say(gettext_noop("The address was refused: %(why)s"), why=" ".join(exc.messages))
        return sending.Outcome(False, error=refused), False
    body = sending.body_of(delivery.payload)
    headers = sending.headers_for(delivery.message_id, body, secrets_of(webhook, now), now)
    timeout = settings.JINGTIAO_WEBHOOK_TIMEOUT_SECONDS
    try:
        return sending.post(target, body, headers, timeout), False
    except SoftTimeLimitExceeded:
        late = say(
            gettext_noop("The attempt took longer than %(seconds)d s."), seconds=soft_time_limit()
        )
        return sending.Outcome(False, error=late), False


def _finish(delivery: WebhookDelivery, number: int, outcome: sending.Outcome, final: bool) -> None:
    now = timezone.now()
    error, error_said = split(outcome.error)
    fields = {
        "response_status": outcome.status,
        "response_excerpt": outcome.excerpt,
        "duration_ms": outcome.duration_ms,
        "error": error,
        "error_said": error_said,
        "next_attempt_at": None,
    }
    delay = None
    if outcome.ok:
        fields.update(status=Status.SUCCEEDED, delivered_at=now)
    elif final or number >= settings.JINGTIAO_WEBHOOK_MAX_ATTEMPTS:
        fields["status"] = Status.FAILED
    else:
        delay = retry_delay(number)
        fields.update(status=Status.PENDING, next_attempt_at=now + timedelta(seconds=delay))
    with transaction.atomic():
        written = WebhookDelivery.objects.filter(
            pk=delivery.pk, status=Status.DELIVERING, attempts=number
        ).update(**fields)
        if written and delay is not None:
            _enqueue_on_commit(delivery.pk, countdown=delay)
    if not written:
        logger.info(
            "delivery %s: attempt %s was taken over; its outcome dropped", delivery.pk, number
        )


def sweep(now: datetime | None = None) -> list[int]:
    """Take up again what no message will bring: pending deliveries well past due (their
    message was lost, or never queued with the broker down) and deliveries a dead
    worker left delivering. Returns the ids queued."""
    now = now or timezone.now()
    stuck = WebhookDelivery.objects.filter(status=Status.DELIVERING, next_attempt_at__lte=now)
    for delivery_id, attempts in stuck.values_list("pk", "attempts")[:SWEEP_BATCH]:
        _release(delivery_id, attempts, now)
    due = WebhookDelivery.objects.filter(
        status=Status.PENDING, next_attempt_at__lte=now - SWEEP_GRACE
    ).order_by("next_attempt_at")
    queued = list(due.values_list("pk", flat=True)[:SWEEP_BATCH])
    for delivery_id in queued:
        enqueue(_deliver_task(), delivery_id)
    return queued


def _release(delivery_id: int, attempts: int, now: datetime) -> None:
    """A stuck attempt counts as a failed one: pending again (due now, so the same sweep
    queues it), or failed if it was the last."""
    lost = say(gettext_noop("The attempt did not finish (its worker stopped)."))
    error, error_said = split(lost)
    given_up = attempts >= settings.JINGTIAO_WEBHOOK_MAX_ATTEMPTS
    WebhookDelivery.objects.filter(
        pk=delivery_id, status=Status.DELIVERING, attempts=attempts
    ).update(
        status=Status.FAILED if given_up else Status.PENDING,
        next_attempt_at=None if given_up else now - SWEEP_GRACE,
        error=error,
        error_said=error_said,
        response_status=None,
        response_excerpt="",
    )


def _enqueue_on_commit(delivery_id: int, countdown: float | None = None) -> None:
    task = _deliver_task()
    if countdown:
        # a signature with its countdown: enqueue() calls .delay() on it as on a task
        task = task.signature((), countdown=countdown)
    transaction.on_commit(functools.partial(enqueue, task, delivery_id))


def _deliver_task():
    from webhooks.tasks import deliver  # the tasks module imports this one

    return deliver
