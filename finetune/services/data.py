"""Data sets and model repos that members prepare for their jobs (issue 6, part 6).

Files come either as an upload (one .jsonl, or a .zip of images with
metadata.jsonl for text-to-image) or as a path that already lies under the data
root; nothing outside the data root is ever read, so a member cannot point a
job at another project's files or at the system's.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from accounts.models import Project
from finetune import access
from finetune.models import Algorithm, Dataset, ModelRepo, Scenario
from finetune.storage import data_root, resolve
from trainer import datavalidation


def under_data_root(location: str) -> str:
    """`location` relative to the data root, refusing anything that escapes it."""
    root = data_root().resolve()
    path = Path(location.strip())
    target = (path if path.is_absolute() else root / path).resolve()
    if target != root and not target.is_relative_to(root):
        raise ValidationError(_("The path must lie under the data root."), code="outside")
    if target == root:
        raise ValidationError(_("Name a file or folder under the data root."), code="root")
    return str(target.relative_to(root))


def _folder_for(project: Project, name: str) -> Path:
    slug = slugify(name) or "data"
    folder = data_root() / "datasets" / str(project.pk) / slug
    if folder.exists():
        raise ValidationError({"upload": [_("Files of a data set with this name already exist.")]})
    return folder


def _extract_zip(upload: UploadedFile, folder: Path) -> Path:
    """Unpack a text-to-image archive; members that would land outside are refused."""
    try:
        archive = zipfile.ZipFile(upload)
    except zipfile.BadZipFile as exc:
        raise ValidationError({"upload": [_("The file is not a zip archive.")]}) from exc
    with archive:
        for member in archive.namelist():
            if not (folder / member).resolve().is_relative_to(folder.resolve()):
                raise ValidationError({"upload": [_("The archive contains unsafe paths.")]})
        folder.mkdir(parents=True)
        archive.extractall(folder)
    # An archive of one top folder is common (zip -r data.zip data/): use that folder.
    entries = list(folder.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder


def store_upload(project: Project, scenario: Scenario, name: str, upload: UploadedFile) -> str:
    """Save an uploaded data set under the data root; returns its location."""
    text_to_image = scenario.task_type == "t2i"
    suffix = Path(upload.name or "").suffix.lower()
    expected = ".zip" if text_to_image else ".jsonl"
    if suffix != expected:
        raise ValidationError(
            {"upload": [_("Upload a %(suffix)s file for this scenario.") % {"suffix": expected}]}
        )
    folder = _folder_for(project, name)
    if text_to_image:
        target = _extract_zip(upload, folder)
    else:
        folder.mkdir(parents=True)
        target = folder / "data.jsonl"
        with target.open("wb") as handle:
            for chunk in upload.chunks():
                handle.write(chunk)
    return str(target.relative_to(data_root()))


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return 0


def validate_dataset(dataset: Dataset, algorithm: Algorithm | None = None) -> dict:
    """Run the trainer's validator on the data set and keep its report on the row."""
    path = resolve(dataset.location)
    code = algorithm.code if algorithm is not None else None
    try:
        report = datavalidation.validate(dataset.scenario.code, str(path), algorithm=code)
    except (ValueError, KeyError):
        # An algorithm the trainer does not know (retired): judge by the scenario alone.
        report = datavalidation.validate(dataset.scenario.code, str(path))
    result = report.to_dict()
    dataset.validation_report = result
    dataset.validation_status = (
        Dataset.Validation.VALID if report.ok else Dataset.Validation.INVALID
    )
    dataset.validated_at = timezone.now()
    dataset.record_count = report.valid_rows
    dataset.size_bytes = _size(path)
    fields = ["validation_report", "validation_status", "validated_at", "record_count"]
    fields.append("size_bytes")
    if report.format in Dataset.Format.values:
        dataset.format = report.format
        fields.append("format")
    dataset.save(update_fields=[*fields, "updated_at"])
    return result


def _default_format(scenario: Scenario) -> str:
    return datavalidation.SCENARIO_FORMATS[scenario.code][0]


def create_dataset(
    user,
    project: Project,
    *,
    name: str,
    scenario: Scenario,
    level: str,
    upload: UploadedFile | None = None,
    path: str = "",
) -> Dataset:
    """A data set from an upload or a path under the data root, validated at once."""
    if Dataset.objects.filter(project=project, name=name).exists():
        raise ValidationError({"name": [_("A data set with this name already exists.")]})
    if upload is not None:
        location = store_upload(project, scenario, name, upload)
    else:
        try:
            location = under_data_root(path)
        except ValidationError as exc:
            raise ValidationError({"path": exc.messages}) from exc
        if not resolve(location).exists():
            raise ValidationError({"path": [_("Nothing exists at this path.")]})
    try:
        with transaction.atomic():
            dataset = Dataset.objects.create(
                project=project,
                creator=user,
                name=name,
                scenario=scenario,
                format=_default_format(scenario),
                location=location,
            )
            access.share_new(dataset, level)
    except Exception:
        if upload is not None:
            shutil.rmtree(resolve(location).parent, ignore_errors=True)
        raise
    validate_dataset(dataset)
    return dataset


def create_model_repo(
    user,
    project: Project,
    *,
    name: str,
    scenario: Scenario,
    level: str,
    path: str = "",
    description: str = "",
) -> ModelRepo:
    """A save-model address (保存模型地址); by default a new folder under repos/<project>/."""
    if ModelRepo.objects.filter(project=project, name=name).exists():
        raise ValidationError({"name": [_("A model repository with this name already exists.")]})
    if path:
        try:
            location = under_data_root(path)
        except ValidationError as exc:
            raise ValidationError({"path": exc.messages}) from exc
    else:
        location = str(Path("repos") / str(project.pk) / (slugify(name) or "models"))
    resolve(location).mkdir(parents=True, exist_ok=True)
    with transaction.atomic():
        repo = ModelRepo.objects.create(
            project=project,
            creator=user,
            name=name,
            scenario=scenario,
            location=location,
            description=description,
        )
        access.share_new(repo, level)
    return repo
