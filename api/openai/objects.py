"""The platform's objects in OpenAI's shapes (its API reference: the File, the
fine-tuning job, its events and checkpoints), and its error body."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from api.openai.jobs import FILE, HYPERPARAMETERS, JOB, status_of
from finetune.models import Dataset, Job, JobEvent, JobStatus
from finetune.services.checkpoints import checkpoints_of

#: a data set's validation -> OpenAI's file status
FILE_STATUSES = {"pending": "uploaded", "valid": "processed", "invalid": "error"}


def seconds(when: datetime | None) -> int | None:
    return int(when.timestamp()) if when is not None else None


def error(
    message: str,
    param: str | None = None,
    code: str | None = None,
    kind: str = "invalid_request_error",
) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def file_object(dataset: Dataset) -> dict:
    status = FILE_STATUSES.get(dataset.validation_status, "uploaded")
    details = None
    if status == "error":
        report = dataset.validation_report or {}
        problems = report.get("problems") or []
        details = "; ".join(f"row {p.get('row')}: {p.get('problem')}" for p in problems[:5]) or None
    return {
        "id": f"{FILE}{dataset.pk}",
        "object": "file",
        "bytes": dataset.size_bytes,
        "created_at": seconds(dataset.created_at),
        "filename": dataset.name,
        "purpose": "fine-tune",
        "status": status,
        "status_details": details,
    }


def _hyperparameters(job: Job) -> dict[str, Any]:
    params = job.parameters or {}
    props = (job.algorithm.parameters_schema or {}).get("properties") or {}
    found: dict[str, Any] = {
        openai: params.get(ours, props.get(ours, {}).get("default"))
        for openai, ours in HYPERPARAMETERS.items()
        if ours in props
    }
    default_rate = props.get("learning_rate", {}).get("default")
    rate = params.get("learning_rate", default_rate)
    if default_rate and rate is not None:
        found["learning_rate_multiplier"] = round(rate / default_rate, 6)
    return found


def _error(job: Job) -> dict | None:
    if job.status not in (JobStatus.FAILED, JobStatus.EXPIRED):
        return None
    return {
        "code": str(job.status),
        "message": job.reason_text or str(job.get_status_display()),
        "param": None,
    }


def fine_tuned_model(job: Job) -> str | None:
    version = job.output_version
    return f"{job.model_repo.name}:v{version.number}" if version is not None else None


def job_object(job: Job) -> dict:
    extra = job.metadata or {}
    method = extra.get("method") or ("dpo" if job.algorithm.code == "dpo" else "supervised")
    hyper = _hyperparameters(job)
    return {
        "object": "fine_tuning.job",
        "id": f"{JOB}{job.pk}",
        "model": job.pretrained_model.name,
        "created_at": seconds(job.created_at),
        "finished_at": seconds(job.finished_at),
        "fine_tuned_model": fine_tuned_model(job),
        "organization_id": f"project-{job.project_id}",
        "result_files": [],
        "status": status_of(job),
        "validation_file": f"{FILE}{job.validation_dataset_id}"
        if job.validation_dataset_id
        else None,
        "training_file": f"{FILE}{job.train_dataset_id}",
        "hyperparameters": hyper,
        "method": {"type": method, method: {"hyperparameters": hyper}},
        "trained_tokens": None,
        "error": _error(job),
        "seed": (job.parameters or {}).get("seed"),
        "estimated_finish": seconds(job.eta_at) if job.status == JobStatus.RUNNING else None,
        "integrations": [],
        "metadata": extra.get("metadata") or None,
        "user_provided_suffix": extra.get("suffix") or None,
    }


LEVELS = {JobStatus.FAILED: "error", JobStatus.EXPIRED: "error", JobStatus.STOPPED: "warn"}


def event_object(event: JobEvent) -> dict:
    level = LEVELS.get(event.to_status, "info") if event.to_status else "info"
    return {
        "object": "fine_tuning.job.event",
        "id": f"ftevent-{event.pk}",
        "created_at": seconds(event.time),
        "level": level,
        "message": event.text,
        "type": "message",
        "data": {},
    }


def checkpoint_objects(job: Job) -> list[dict]:
    """The job's checkpoints, newest first; a finished job's model is the last one."""
    found = [
        {
            "object": "fine_tuning.job.checkpoint",
            "id": f"ftckpt-{job.pk}-{checkpoint.step}",
            "created_at": int(checkpoint.saved_at),
            "fine_tuned_model_checkpoint": f"{JOB}{job.pk}:ckpt-step-{checkpoint.step}",
            "fine_tuning_job_id": f"{JOB}{job.pk}",
            "metrics": {"step": checkpoint.step},
            "step_number": checkpoint.step,
        }
        for checkpoint in checkpoints_of(job)
    ]
    version = job.output_version
    if version is not None:
        # the trainer's "steps" (trainer/algorithms/common.py, t2i.py): the last step
        step = (version.metrics or {}).get("steps") or max(
            (c["step_number"] for c in found), default=0
        )
        found.append(
            {
                "object": "fine_tuning.job.checkpoint",
                "id": f"ftckpt-{job.pk}-final",
                "created_at": seconds(version.created_at),
                "fine_tuned_model_checkpoint": fine_tuned_model(job),
                "fine_tuning_job_id": f"{JOB}{job.pk}",
                "metrics": {
                    "step": step,
                    **{
                        k: v
                        for k, v in (version.metrics or {}).items()
                        if isinstance(v, int | float)
                    },
                },
                "step_number": step,
            }
        )
    return sorted(found, key=lambda c: c["created_at"] or 0, reverse=True)
