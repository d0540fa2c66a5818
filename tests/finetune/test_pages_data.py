"""Data sets and save-model addresses: a member prepares a job without the admin."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from accounts.models import Access
from finetune.models import Dataset, ModelRepo
from finetune.services import validation
from finetune.storage import resolve
from tests import factories
from tests.finetune import pages_support as support
from trainer.samples import write_sample_dataset

pytestmark = pytest.mark.django_db


def _post(client, **fields):
    scenario = factories.scenario(fields.pop("scenario", "llm/sft"))
    data = {"name": "uploaded", "scenario": scenario.pk, "access": Access.READ_ONLY, **fields}
    return client.post(reverse("finetune:dataset_create"), data)


def test_an_uploaded_jsonl_is_stored_then_validated_by_a_worker_and_shared(
    client, alice, bob, tmp_path, data_worker
):
    sample = write_sample_dataset("sft_messages", tmp_path / "chat.jsonl", rows=5)
    client.force_login(alice)
    response = _post(client, upload=SimpleUploadedFile("chat.jsonl", sample.read_bytes()))
    dataset = Dataset.objects.get()
    assert response["Location"] == reverse("finetune:dataset_detail", args=[dataset.pk])
    assert dataset.validation_status == "pending" and dataset.record_count == 0
    detail = reverse("finetune:dataset_detail", args=[dataset.pk])
    polled = reverse("finetune:dataset_validation", args=[dataset.pk])
    page = client.get(detail).content.decode()
    assert "Waiting to be validated" in page and f'hx-get="{polled}"' in page

    with data_worker():
        validation.request_validation(dataset.pk)
    dataset.refresh_from_db()
    assert dataset.validation_status == "valid" and dataset.record_count == 5
    answer = client.get(polled, headers={"HX-Request": "true"})
    assert answer["HX-Refresh"] == "true"  # done: the page reloads whole, polling no more
    client.force_login(bob)
    page = client.get(detail).content.decode()
    assert "5 rows, 5 valid, 0 problem(s)." in page and "hx-get" not in page.split("data-report")[1]
    assert "Validate again" not in page  # read-only: bob may not change it


def test_a_large_upload_is_moved_into_place_not_read_into_memory(client, alice, tmp_path, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024  # anything larger is spooled to disk
    spool = tmp_path / "spool"
    spool.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(spool)
    sample = write_sample_dataset("sft_messages", tmp_path / "chat.jsonl", rows=200)
    client.force_login(alice)
    _post(client, upload=SimpleUploadedFile("chat.jsonl", sample.read_bytes()))
    stored = resolve(Dataset.objects.get().location)
    assert stored.read_bytes() == sample.read_bytes()
    assert list(spool.iterdir()) == []  # the spooled file became the data set's


def test_a_text_to_image_zip_is_kept_and_unpacked_by_the_worker(
    client, alice, tmp_path, data_worker
):
    folder = write_sample_dataset("t2i", tmp_path / "images", rows=3)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in folder.iterdir():
            archive.write(path, f"images/{path.name}")
    client.force_login(alice)
    upload = SimpleUploadedFile("images.zip", buffer.getvalue())
    with data_worker():
        _post(client, scenario="t2i/finetune", upload=upload)
        dataset = Dataset.objects.get()
        assert (resolve(dataset.location) / "upload.zip").is_file()  # kept as it came
    dataset.refresh_from_db()
    assert dataset.validation_status == "valid" and dataset.format == "t2i"
    assert dataset.location.endswith("/uploaded/images")  # the archive's one top folder
    assert not (resolve(dataset.location).parent / "upload.zip").exists()


def test_a_broken_archive_makes_an_invalid_data_set_that_says_why(client, alice, data_worker):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("metadata.jsonl", "x" * 1000)
    damaged = bytearray(buffer.getvalue())
    damaged[40:60] = b"\0" * 20  # the member's data, past its header
    client.force_login(alice)
    with data_worker():
        _post(client, scenario="t2i/finetune", upload=SimpleUploadedFile("a.zip", bytes(damaged)))
    dataset = Dataset.objects.get()
    assert dataset.validation_status == "invalid"
    assert "the archive cannot be unpacked" in dataset.validation_report["problems"][0]["problem"]


def test_an_archive_with_unsafe_paths_is_refused(client, alice):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../evil.txt", "x")
    client.force_login(alice)
    response = _post(
        client, scenario="t2i/finetune", upload=SimpleUploadedFile("a.zip", buffer.getvalue())
    )
    assert "The archive contains unsafe paths." in response.content.decode()
    assert not Dataset.objects.exists()


def test_a_path_escaping_the_data_root_is_refused(client, project, alice):
    client.force_login(alice)
    response = _post(client, path="../../etc/passwd")
    assert response.status_code == 400
    assert (
        f"The path must lie inside one of these folders of the data root: datasets/{project.pk}/."
        in response.content.decode()
    )


def test_a_bad_data_set_shows_its_row_level_report(client, project, alice, data_worker):
    broken = support.bad_dataset(project, alice)
    client.force_login(alice)
    with data_worker():
        client.post(reverse("finetune:dataset_validate", args=[broken.pk]))
    page = client.get(reverse("finetune:dataset_detail", args=[broken.pk])).content.decode()
    assert "Invalid" in page and "invalid JSON" in page


def test_a_model_repo_gets_a_folder_of_the_project(client, project, alice, settings):
    client.force_login(alice)
    client.post(
        reverse("finetune:modelrepo_create"),
        {"name": "Chat Models", "scenario": factories.scenario().pk, "access": "rw"},
    )
    repo = ModelRepo.objects.get()
    assert repo.location == f"repos/{project.pk}/chat-models"
    assert (settings.DATA_ROOT / repo.location).is_dir()


def test_lists_show_only_what_the_member_may_see(client, project, alice, bob):
    factories.dataset(project, alice, name="open-data", level=Access.READ_ONLY)
    factories.dataset(project, alice, name="closed-data", level=Access.NONE)
    client.force_login(bob)
    page = client.get(reverse("finetune:dataset_list")).content.decode()
    assert "open-data" in page and "closed-data" not in page


def _zip(members: dict[str, bytes]) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return SimpleUploadedFile("images.zip", buffer.getvalue())


def test_an_archive_that_unpacks_to_too_much_is_refused_before_anything_is_written(
    client, project, alice, settings
):
    settings.JINGTIAO_UPLOAD_MAX_UNPACKED_BYTES = 2**20
    bomb = _zip({"metadata.jsonl": b"{}\n", "big.png": b"\0" * (8 * 2**20)})
    assert len(bomb.read()) < 64 * 1024  # weighs little, unpacks to 8 MiB
    bomb.seek(0)
    client.force_login(alice)
    response = _post(client, scenario="t2i/finetune", upload=bomb)
    assert response.status_code == 400
    assert "The archive unpacks to more than 1.0" in response.content.decode()
    assert not Dataset.objects.exists()
    assert not (settings.DATA_ROOT / f"datasets/{project.pk}").exists()


def test_an_archive_of_too_many_files_is_refused(client, alice, settings):
    settings.JINGTIAO_UPLOAD_MAX_FILES = 3
    client.force_login(alice)
    members = {f"{n}.png": b"x" for n in range(5)}
    response = _post(client, scenario="t2i/finetune", upload=_zip(members))
    assert response.status_code == 400
    assert "The archive holds more than 3 files." in response.content.decode()


def test_uploads_whose_names_make_the_same_folder_name_get_folders_of_their_own(
    client, alice, tmp_path
):
    sample = write_sample_dataset("sft_messages", tmp_path / "chat.jsonl", rows=3)
    client.force_login(alice)
    for name in ("上传的对话", "大对话", "Chat", "chat!"):  # the last two: both "chat"
        upload = SimpleUploadedFile("chat.jsonl", sample.read_bytes())
        assert _post(client, name=name, upload=upload).status_code == 302, name
    locations = dict(Dataset.objects.values_list("name", "location"))
    folders = {name: location.split("/")[2] for name, location in locations.items()}
    assert folders == {
        "上传的对话": "上传的对话",
        "大对话": "大对话",
        "Chat": "chat",
        "chat!": "chat-2",
    }
    assert all(
        resolve(location).read_bytes() == sample.read_bytes() for location in locations.values()
    )


def test_a_data_sets_problems_are_said_in_the_pages_language(client, project, alice):
    from django.utils import translation

    path = resolve(f"datasets/{project.pk}/mixed.jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ['{"messages": "hi"}', "not json", '{"messages": [{"role": "bot", "content": ""}]}']
    path.write_text("\n".join(rows) + "\n")
    dataset = support.validated(
        factories.dataset(
            project, alice, name="mixed", location=f"datasets/{project.pk}/mixed.jsonl"
        )
    )
    client.force_login(alice)
    client.cookies["django_language"] = "zh-hans"
    with translation.override("zh-hans"):
        page = client.get(reverse("finetune:dataset_detail", args=[dataset.pk])).content.decode()
    for said in (  # the catalogue's own words, full-width punctuation and all
        "必须是数组，实际为字符串",  # noqa: RUF001
        "JSON 无效：第 1 列缺少值",  # noqa: RUF001
        "必须是 system, user, assistant, tool 之一，实际为 &#x27;bot&#x27;",  # noqa: RUF001
        "文本为空",
        "没有可供学习的 assistant 消息",
    ):
        assert said in page, said
    assert "invalid JSON" not in page and "must be" not in page
    # the report keeps the English for logs, scripts and the admin's search
    problems = dataset.validation_report["problems"]
    assert problems[0]["problem"] == "must be an array, got string"
