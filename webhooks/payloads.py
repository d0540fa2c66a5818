"""What a webhook's message says: the event, when, and the job or version it is about.

Only what the project's members see on the job's or version's page anyway, and
what a receiver needs to find it: no report token, no spec, no parameters, no
folders on the data volume. The format is docs/webhooks.md's; adding a key is
fine, renaming one breaks receivers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.urls import reverse

from finetune.models import Job, JobStatus, ModelVersion
from webhooks.models import Event, Webhook

#: the event a job's move to each status is
EVENT_OF_STATUS = {
    JobStatus.QUEUED: Event.JOB_QUEUED,  # created, or given back by the cluster (R -> Q)
    JobStatus.RUNNING: Event.JOB_STARTED,
    JobStatus.SUCCEEDED: Event.JOB_SUCCEEDED,
    JobStatus.FAILED: Event.JOB_FAILED,
    JobStatus.STOPPED: Event.JOB_STOPPED,
    JobStatus.EXPIRED: Event.JOB_EXPIRED,
}


def message(event: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": str(event), "timestamp": _time(at), "data": data}


def job_data(job: Job) -> dict[str, Any]:
    """The job as it is now (the move the event is about has committed)."""
    version = job.output_version
    return {
        "job": {
            "id": job.pk,
            "name": job.name,
            "project": {"id": job.project_id, "name": job.project.name},
            "status": job.status,
            "creator": job.creator.get_username(),
            "scenario": job.scenario.code,
            "algorithm": job.algorithm.code,
            "base_model": job.pretrained_model.name,
            "created_at": _time(job.created_at),
            "started_at": _time(job.started_at),
            "finished_at": _time(job.finished_at),
            # the English words as written; the page says them in its reader's language
            "status_reason": job.status_reason,
            "url": page_url(reverse("finetune:job_detail", args=[job.pk])),
            "model_version": version_summary(version) if version is not None else None,
        }
    }


def version_data(version: ModelVersion) -> dict[str, Any]:
    job = version.job
    summary = version_summary(version)
    summary["project"] = {"id": version.repo.project_id, "name": version.repo.project.name}
    summary["job"] = (
        None
        if job is None
        else {
            "id": job.pk,
            "name": job.name,
            "url": page_url(reverse("finetune:job_detail", args=[job.pk])),
        }
    )
    summary["derived_from"] = version.derived_from.number if version.derived_from else None
    return {"model_version": summary}


def version_summary(version: ModelVersion) -> dict[str, Any]:
    return {
        "id": version.pk,
        "number": version.number,
        "repo": {"id": version.repo_id, "name": version.repo.name},
        "created_at": _time(version.created_at),
        "url": page_url(
            reverse("finetune:modelversion_detail", args=[version.repo_id, version.number])
        ),
    }


def test_event_data(webhook: Webhook) -> dict[str, Any]:
    return {
        "webhook": {
            "id": webhook.pk,
            "project": {"id": webhook.project_id, "name": webhook.project.name},
        },
        "message": "This is a test event sent from the webhook's page.",
    }


def page_url(path: str) -> str:
    """An absolute address of one of the platform's pages, for people to follow."""
    return settings.JINGTIAO_WEBHOOK_PUBLIC_URL.rstrip("/") + path


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
