"""Where things live under the data root (JINGTIAO_DATA_ROOT).

jobs/<id>/         spec, logs, pid and exit files, archived logs of one job
models/            pretrained base models
datasets/          uploaded data sets
repos/<project>/   model repositories and their versions
"""

from __future__ import annotations

import shutil
from pathlib import Path

from django.conf import settings


def data_root() -> Path:
    return Path(settings.DATA_ROOT)


def jobs_root() -> Path:
    return data_root() / "jobs"


def job_dir(job_id: int) -> Path:
    return jobs_root() / str(job_id)


def resolve(location: str) -> Path:
    """A catalog location: relative ones are under the data root."""
    path = Path(location)
    return path if path.is_absolute() else data_root() / path


def remove_job_dir(job_id: int) -> bool:
    """Delete a job's folder; True if there was one. Safe to repeat."""
    folder = job_dir(job_id)
    if not folder.exists():
        return False
    shutil.rmtree(folder, ignore_errors=False)
    return True
