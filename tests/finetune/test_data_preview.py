"""Issue 19, "what users also expect": a data set's page shows its first rows (chat turns,
labelled fields, image thumbnails) and the lengths of its rows."""

import json

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation
from PIL import Image

from finetune import preview
from finetune.models import Dataset
from tests import factories

pytestmark = pytest.mark.django_db


def _write(dataset: Dataset, rows: list) -> None:
    folder = settings.DATA_ROOT / dataset.location
    folder.mkdir(parents=True)
    text = "\n".join(json.dumps(row, ensure_ascii=False) for row in rows)
    (folder / "train.jsonl").write_text(text + "\n", encoding="utf-8")


def _chat(number: int) -> dict:
    return {
        "messages": [
            {"role": "user", "content": f"问题 {number}"},
            {"role": "assistant", "content": "答" * number},
        ]
    }


def test_a_chat_data_sets_page_shows_its_first_turns_and_row_lengths(client, project, alice):
    dataset = factories.dataset(project, alice)
    _write(dataset, [_chat(n) for n in range(1, 9)] + [{"messages": "not a list"}])
    client.force_login(alice)
    client.cookies["django_language"] = "zh-hans"
    with translation.override("zh-hans"):
        page = client.get(reverse("finetune:dataset_detail", args=[dataset.pk])).content.decode()
    assert page.count("<dt>用户</dt>") == preview.PREVIEW_ROWS
    assert "<dd>问题 1</dd>" in page and "<dt>助手</dt>" in page
    assert "<dd>问题 6</dd>" not in page  # five rows shown
    # "问题 n" (4 characters), a newline and n answers: 6 .. 13 characters; the bad row
    # is left to the validation report
    lengths = preview.preview(dataset).lengths
    assert lengths == {"min": 6, "p50": 9, "p95": 13, "max": 13, "mean": 10}
    assert "共 8 行格式正确的数据" in page


def test_the_lengths_of_a_large_data_set_are_counted_over_its_first_rows(
    project, alice, monkeypatch
):
    monkeypatch.setattr(preview, "STATS_ROWS", 3)
    dataset = factories.dataset(project, alice)
    _write(dataset, [_chat(n) for n in range(1, 9)])
    found = preview.preview(dataset)
    assert (found.counted, found.complete) == (3, False)
    assert found.lengths["max"] == 8
    monkeypatch.setattr(preview, "STATS_ROWS", 100)
    monkeypatch.setattr(preview, "STATS_CHARS", 20)  # rows of 6, 7, 8, ... characters
    found = preview.preview(dataset)
    assert (found.counted, found.complete) == (3, False)


def test_a_preference_data_set_shows_its_labelled_fields(client, project, alice):
    dataset = factories.dataset(
        project,
        alice,
        scenario=factories.scenario("llm/reward_model"),
        format=Dataset.Format.PREFERENCE,
    )
    _write(dataset, [{"prompt": "哪个好", "chosen": "这个", "rejected": "那个"}])
    client.force_login(alice)
    client.cookies["django_language"] = "zh-hans"
    with translation.override("zh-hans"):
        page = client.get(reverse("finetune:dataset_detail", args=[dataset.pk])).content.decode()
    for shown in ("<dd>哪个好</dd>", "<dd>这个</dd>", "<dd>那个</dd>"):
        assert shown in page


def test_an_image_data_set_shows_thumbnails_only_of_its_own_images(
    client, project, other_project, alice, charlie
):
    dataset = factories.dataset(
        project, alice, scenario=factories.scenario("t2i/finetune"), format=Dataset.Format.T2I
    )
    folder = settings.DATA_ROOT / dataset.location
    folder.mkdir(parents=True)
    Image.new("RGB", (40, 40), "red").save(folder / "red.png")
    (folder / "metadata.jsonl").write_text(
        json.dumps({"file_name": "red.png", "text": "a red square"}) + "\n"
    )
    (folder / "notes.txt").write_text("not an image")
    (settings.DATA_ROOT / "secret.png").write_bytes((folder / "red.png").read_bytes())

    client.force_login(alice)
    page = client.get(reverse("finetune:dataset_detail", args=[dataset.pk])).content.decode()
    image = reverse("finetune:dataset_image", args=[dataset.pk, "red.png"])
    assert f'src="{image}"' in page and 'alt="a red square"' in page
    response = client.get(image)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == (folder / "red.png").read_bytes()
    for name in ("notes.txt", "../../../secret.png", "missing.png"):
        url = reverse("finetune:dataset_image", args=[dataset.pk, name])
        assert client.get(url).status_code == 404, name
    client.force_login(charlie)  # a member of another project only
    assert client.get(image).status_code == 404
