"""Data sets and model repos that members prepare for their jobs (issue 6, part 6).

Files come either as an upload (one .jsonl, or a .zip of images with
metadata.jsonl for text-to-image) or as a path inside the project's own areas
(finetune/storage.py): a data set reads from `datasets/<project>/` or a shared
read-only folder, a model repo writes into `repos/<project>/`, so a member can
point a job neither at another project's files nor at the platform's.
"""

from __future__ import annotations

import contextlib
import shutil
import zipfile
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Q
from django.template.defaultfilters import filesizeformat
from django.utils.text import slugify
from django.utils.translation import gettext as _

from accounts.models import Project
from finetune import access, storage
from finetune.inputs import whole_number
from finetune.models import Dataset, ModelRepo, ModelVersion, Scenario
from finetune.services.validation import ARCHIVE, ZIP_ERRORS, request_validation
from finetune.storage import data_root, resolve
from trainer import datavalidation


def _folder_for(project: Project, name: str) -> Path:
    """A new folder for an upload: named after the data set (in its own script: two
    Chinese names must not both become "data"), numbered where that one is taken."""
    area = data_root() / storage.project_area(project.pk, storage.DATASETS)
    slug = slugify(name, allow_unicode=True) or "data"
    for number in range(1, 1000):
        folder = area / (slug if number == 1 else f"{slug}-{number}")
        if not folder.exists():
            return folder
    raise ValidationError({"name": [_("Choose another name: its folder is taken.")]})


def _check_archive(upload: UploadedFile) -> None:
    """Refuse a text-to-image archive before it is kept: members that would land
    outside its folder, more members or more unpacked bytes than the settings allow
    (an archive that unpacks to far more than it weighs), an unreadable one. Only its
    table of contents is read here; a worker unpacks it (services/validation.py)."""
    try:
        archive = zipfile.ZipFile(upload)
    except ZIP_ERRORS as exc:
        raise ValidationError({"upload": [_("The file is not a zip archive.")]}) from exc
    with archive:
        members = archive.infolist()
        if len(members) > settings.JINGTIAO_UPLOAD_MAX_FILES:
            raise ValidationError(
                {
                    "upload": [
                        _("The archive holds more than %(count)s files.")
                        % {"count": settings.JINGTIAO_UPLOAD_MAX_FILES}
                    ]
                }
            )
        unpacked = sum(member.file_size for member in members)
        if unpacked > settings.JINGTIAO_UPLOAD_MAX_UNPACKED_BYTES:
            raise ValidationError(
                {
                    "upload": [
                        _("The archive unpacks to more than %(size)s.")
                        % {"size": filesizeformat(settings.JINGTIAO_UPLOAD_MAX_UNPACKED_BYTES)}
                    ]
                }
            )
        folder = Path("/unpacked")
        for member in members:
            try:
                inside = (folder / member.filename).resolve().is_relative_to(folder)
            except (OSError, ValueError):  # a NUL byte, a name too long
                inside = False
            if not inside:
                raise ValidationError({"upload": [_("The archive contains unsafe paths.")]})
            if member.flag_bits & 0x1:
                raise ValidationError({"upload": [_("The archive is encrypted.")]})


def _keep(upload: UploadedFile, target: Path) -> None:
    """Put the uploaded file at ``target``: a large one Django spooled to a temporary
    file is moved (a rename on the same disk), a small one written in chunks; never
    the whole file in memory."""
    if hasattr(upload, "temporary_file_path"):
        shutil.move(upload.temporary_file_path(), target)
        return
    with target.open("wb") as handle:
        for chunk in upload.chunks():
            handle.write(chunk)


def store_upload(
    project: Project, scenario: Scenario, name: str, upload: UploadedFile
) -> tuple[str, Path]:
    """Save an uploaded data set in the project's area; returns its location and the
    folder made for it (all that a refusal later must remove)."""
    text_to_image = scenario.task_type == "t2i"
    suffix = Path(upload.name or "").suffix.lower()
    expected = ".zip" if text_to_image else ".jsonl"
    if suffix != expected:
        raise ValidationError(
            {"upload": [_("Upload a %(suffix)s file for this scenario.") % {"suffix": expected}]}
        )
    folder = _folder_for(project, name)
    if text_to_image:
        _check_archive(upload)
    try:
        folder.mkdir(parents=True)
        # an archive is unpacked by the worker that validates it
        target = folder / (ARCHIVE if text_to_image else "data.jsonl")
        _keep(upload, target)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # a disk that filled up
        raise
    location = folder if text_to_image else target
    return str(location.relative_to(data_root())), folder


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
    """A data set from an upload or a path under the data root; a worker validates it
    (services/validation.py) while the page shows its progress."""
    if Dataset.objects.filter(project=project, name=name).exists():
        raise ValidationError({"name": [_("A data set with this name already exists.")]})
    uploaded = None
    if upload is not None:
        location, uploaded = store_upload(project, scenario, name, upload)
    else:
        location = _named_path(path, storage.readable_areas(project.pk))
        if not resolve(location).exists():
            raise ValidationError({"path": [_("Nothing exists at this path.")]})
        _check_not_hidden(user, project, location)
    dataset = None
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
            request_validation(dataset.pk)
    except BaseException:
        # Nothing half-made stays: neither the row (if it was made) nor uploaded files.
        if dataset is not None and dataset.pk is not None:
            Dataset.objects.filter(pk=dataset.pk).delete()
        if uploaded is not None:
            shutil.rmtree(uploaded, ignore_errors=True)
        raise
    return dataset


def _check_not_hidden(user, project: Project, location: str) -> None:
    """A path may not reach the files of a data set of the project that the user may not
    see (a colleague's, shared as none): registering it again would read them anyway.
    Shared folders are everyone's to read."""
    if any(storage.is_within(location, [area]) for area in storage.shared_areas()):
        return
    overlapping = _overlapping(Dataset.objects.filter(project=project), location)
    visible = access.restrict(Dataset.objects.filter(project=project), user)
    if overlapping.exclude(pk__in=visible.values("pk")).exists():
        raise ValidationError(
            {"path": [_("This path holds the files of a data set you may not use.")]}
        )


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
        location = _named_path(path, storage.writable_areas(project.pk))
        _check_repo_folder(location)
    else:
        location = _free_repo_folder(project, slugify(name) or "models")
    _make_folder(location)
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


def _named_path(path: str, areas: list[str]) -> str:
    try:
        return storage.within(path, areas)
    except storage.PathRefused as exc:
        raise ValidationError({"path": exc.messages}) from exc


def _check_repo_folder(location: str) -> None:
    """A repo's folder is a folder of its own: not a file, not inside another repo's
    folder nor around one (versions of two repos would mix)."""
    if resolve(location).is_file():
        raise ValidationError({"path": [_("A file exists at this path; name a folder.")]})
    if _overlapping(ModelRepo.objects.all(), location).exists():
        raise ValidationError({"path": [_("Another save-model address already uses this folder.")]})


def _overlapping(rows, location: str):
    """The rows whose location is `location`, a folder above it, or lies below it."""
    exact_or_above, below = storage.nested_around(location)
    return rows.filter(Q(location__in=exact_or_above) | Q(location__startswith=below))


def _free_repo_folder(project: Project, slug: str) -> str:
    """`repos/<project>/<slug>`, numbered when another repo's name gave the same slug, or
    the folder is there already (a deleted repo's files, left on disk: a new repo never
    takes them over, nor do its versions mix with theirs)."""
    area = Path(storage.project_area(project.pk, storage.REPOS))
    for number in range(1, 1000):
        location = str(area / (slug if number == 1 else f"{slug}-{number}"))
        if resolve(location).exists():
            continue
        try:
            _check_repo_folder(location)
        except ValidationError:
            continue
        return location
    raise ValidationError({"name": [_("Choose another name: its folder is taken.")]})


def _make_folder(location: str) -> None:
    # The trainer creates its output folder itself; an empty repo folder is a courtesy.
    with contextlib.suppress(OSError):
        resolve(location).mkdir(parents=True, exist_ok=True)


def usable_versions(user, project: Project, scenario_code: str):
    """Model versions of the project's repos of a scenario that `user` may view: what a
    job may use as a model of its own (e.g. GRPO's reward model)."""
    repos = access.restrict(
        ModelRepo.objects.filter(project=project, scenario__code=scenario_code), user
    )
    return (
        ModelVersion.objects.filter(repo__in=repos)
        .select_related("repo")
        .order_by("repo__name", "-number")
    )


#: A schema keyword of the trainer's: the property names a model trained on the
#: platform (e.g. GRPO's reward model); the page offers versions, never a path, and
#: the job stores the reference `{"model_version": id}`.
MODEL_VERSION = "x-model-version"


def version_ref(value) -> int | None:
    """The version id a stored parameter refers to (`{"model_version": id}`), or that a
    re-rendered form posted (the id as text)."""
    if isinstance(value, dict):
        value = value.get("model_version")
    return whole_number(value)


def version_parameters(schema: dict) -> dict[str, str]:
    """The parameters of a schema that name a model version, with the scenario of each."""
    return {
        name: prop[MODEL_VERSION]["scenario"]
        for name, prop in (schema.get("properties") or {}).items()
        if MODEL_VERSION in prop
    }


def referenced_versions(schema: dict, parameters: dict) -> list[ModelVersion]:
    """The model versions a job's parameters refer to, whoever may see them."""
    refs = [version_ref(parameters.get(name)) for name in version_parameters(schema)]
    wanted = [ref for ref in refs if ref is not None]
    return list(ModelVersion.objects.filter(pk__in=wanted).select_related("repo"))
