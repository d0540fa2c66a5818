"""Where things live under the data root (JINGTIAO_DATA_ROOT), and who may name what.

jobs/<id>/             spec, logs, pid and exit files, archived logs of one job
models/                pretrained base models (operators)
datasets/<project id>/ the data sets of one project: its members read and upload here
repos/<project id>/    the model repositories of one project and their versions
<shared folders>       read-only data every project may use (JINGTIAO_SHARED_DATA_DIRS)

A path a member names is resolved (symbolic links followed) and must land inside
one of their project's areas; anything else is refused with the same words
whether it exists or not, so a refusal tells nothing about other projects' files
or the platform's own (the database, the secret key, job specs with their tokens).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from config.env import PLATFORM_NAMES

DATASETS = "datasets"
REPOS = "repos"
logger = logging.getLogger(__name__)


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


def job_output(repo_location: str, job_id: int | str) -> str:
    """Where a job saves its model: `<repo>/job-<id>`, one folder per job, so two jobs of
    one repo never meet and a relaunch writes to the same place."""
    return f"{repo_location.rstrip('/')}/job-{job_id}"


def remove_job_dir(job_id: int) -> bool:
    """Delete a job's folder; True if there was one. Safe to repeat."""
    folder = job_dir(job_id)
    if not folder.exists():
        return False
    shutil.rmtree(folder, ignore_errors=False)
    return True


# --- project areas ---------------------------------------------------------------------


def project_area(project_id: int, kind: str) -> str:
    """`datasets/<id>` or `repos/<id>`: relative to the data root."""
    if kind not in (DATASETS, REPOS):
        raise ValueError(f"unknown area {kind!r}")
    return f"{kind}/{project_id}"


def shared_areas() -> list[str]:
    """The read-only folders an operator shares with every project (settings), less any
    that resolves (through a link) into or around what the platform keeps for itself
    or for one project: sharing such a folder would open those to everyone."""
    root = data_root().resolve()
    kept = [(root / name).resolve() for name in PLATFORM_NAMES]
    found = []
    for area in settings.JINGTIAO_SHARED_DATA_DIRS:
        folder = (root / area).resolve()
        if any(folder.is_relative_to(k) or k.is_relative_to(folder) for k in kept):
            logger.error("JINGTIAO_SHARED_DATA_DIRS: %s leads into the platform's folders", area)
            continue
        found.append(area)
    return found


def readable_areas(project_id: int) -> list[str]:
    """Where a member of the project may point a data set."""
    return [project_area(project_id, DATASETS), *shared_areas()]


def writable_areas(project_id: int) -> list[str]:
    """Where a member of the project may put a save-model address."""
    return [project_area(project_id, REPOS)]


class PathRefused(ValidationError):
    """A path outside the areas allowed; the message names the allowed ones."""


def _refusal(areas: list[str]) -> PathRefused:
    shown = ", ".join(f"{area}/" for area in areas)
    return PathRefused(
        _("The path must lie inside one of these folders of the data root: %(areas)s.")
        % {"areas": shown},
        code="outside",
    )


def within(location: str, areas: list[str]) -> str:
    """`location` relative to the data root, if it resolves inside one of `areas`.

    The area folders themselves are not accepted: a data set or repo names a file
    or a folder inside them. Nothing about the path is revealed by the refusal.
    """
    text = location.strip()
    if not text or "\x00" in text:
        raise _refusal(areas)
    root = data_root().resolve()
    path = Path(text)
    try:
        target = (path if path.is_absolute() else root / path).resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a name too long
        raise _refusal(areas) from None
    for area in areas:
        folder = (root / area).resolve()
        if target != folder and target.is_relative_to(folder):
            # Named through the area, which may itself be a mount or a link elsewhere.
            return str(Path(area) / target.relative_to(folder))
    raise _refusal(areas)


def is_within(location: str, areas: list[str]) -> bool:
    try:
        within(location, areas)
    except PathRefused:
        return False
    return True


def nested_around(location: str) -> tuple[list[str], str]:
    """For a lookup of rows whose location overlaps `location`: the location itself with
    every folder above it, and the prefix of everything below it."""
    around = [str(parent) for parent in Path(location).parents if str(parent) != "."]
    return [location, *around], f"{location.rstrip('/')}/"
