"""The Celery application. Tasks take ids, are idempotent, and ignore results:
a job's truth is its database row (STYLE.md)."""

import logging
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("jingtiao")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


logger = logging.getLogger(__name__)


def enqueue(task, *args) -> bool:
    """Queue `task`, or log why not. Called after a user's change has committed: a
    broker that is down must not turn that into an error page (and a second
    submission). The periodic passes catch up within one period: admission every
    JINGTIAO_ADMISSION_INTERVAL_SECONDS, the teardown of workloads whose job is no
    longer active at the next reconcile, a data set's validation at the next sweep."""
    try:
        task.delay(*args)
    except Exception as exc:  # kombu, redis and socket errors alike: the broker is away
        logger.warning(
            "could not queue %s%s (%s); a periodic pass will catch up", task.name, args, exc
        )
        return False
    return True
