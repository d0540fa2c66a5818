"""The Celery application. Tasks take ids, are idempotent, and ignore results:
a job's truth is its database row (STYLE.md)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("jingtiao")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
