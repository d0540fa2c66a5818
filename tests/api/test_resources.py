"""/api/v1/ for what jobs use: data sets uploaded or registered and their reports, save-
model addresses and their versions (downloaded whole), specs, pools and the catalog."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from accounts.models import Access
from finetune.models import Dataset, ModelRepo
from finetune.storage import resolve
from tests import factories
from tests.finetune import pages_support as support
from tests.finetune.test_model_versions import version  # noqa: F401  (a fixture)

pytestmark = pytest.mark.django_db
CHAT = (
    json.dumps(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    ).encode()
    + b"\n"
)


def _scenario():
    support.catalog()
    return factories.scenario("llm/sft")


def test_a_data_set_is_uploaded_validated_and_reported(
    api_of, project, alice, django_capture_on_commit_callbacks, data_worker
):
    scenario = _scenario()
    client = api_of(alice)
    upload = io.BytesIO(CHAT * 3 + b"not json\n")
    upload.name = "chat.jsonl"
    with data_worker():
        made = client.post(
            "/api/v1/datasets/",
            {"name": "聊天", "scenario": scenario.pk, "upload": upload},
            format="multipart",
        )
    assert made.status_code == 201, made.json()
    dataset = Dataset.objects.get(pk=made.json()["id"])
    assert (dataset.name, dataset.access) == ("聊天", Access.NONE)
    report = client.get(f"/api/v1/datasets/{dataset.pk}/validation/").json()
    assert report["validation_status"] == "invalid"
    assert report["validation_report"]["problems"][0]["row"] == 4
    listed = client.get("/api/v1/datasets/", {"project": project.pk}).json()
    assert [d["name"] for d in listed["results"]] == ["聊天"]


def test_a_path_is_registered_only_inside_the_projects_areas(api_of, project, alice):
    scenario = _scenario()
    inside = resolve(f"datasets/{project.pk}/given.jsonl")
    inside.parent.mkdir(parents=True, exist_ok=True)
    inside.write_bytes(CHAT)
    client = api_of(alice)
    body = {"name": "given", "scenario": scenario.pk, "path": f"datasets/{project.pk}/given.jsonl"}
    assert client.post("/api/v1/datasets/", body, format="json").status_code == 201
    outside = {**body, "name": "escape", "path": "../../etc/passwd"}
    refused = client.post("/api/v1/datasets/", outside, format="json")
    assert refused.status_code == 400 and "path" in refused.json()
    both = client.post("/api/v1/datasets/", {"name": "x", "scenario": scenario.pk}, format="json")
    assert both.status_code == 400 and "non_field_errors" in both.json()
    assert client.post("/api/v1/datasets/", [1, 2], format="json").status_code == 400


def test_a_repo_is_made_and_its_version_downloads_whole(api_of, project, alice, version):  # noqa: F811
    client = api_of(alice)
    made = client.post(
        "/api/v1/repos/", {"name": "新仓库", "scenario": _scenario().pk}, format="json"
    )
    assert made.status_code == 201 and made.json()["version_count"] == 0
    assert ModelRepo.objects.get(pk=made.json()["id"]).location.startswith(f"repos/{project.pk}/")
    versions = client.get(f"/api/v1/repos/{version.repo_id}/versions/").json()["results"]
    assert [v["number"] for v in versions] == [version.number]
    detail = client.get(f"/api/v1/repos/{version.repo_id}/versions/{version.number}/").json()
    assert detail["metrics"]["final_loss"] == 1.25
    response = client.get(detail["download_url"])
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    names = {name.split("/", 1)[1] for name in archive.namelist()}
    assert "SHA256SUMS" in names and "manifest.json" in names
    assert client.get(f"/api/v1/repos/{version.repo_id}/versions/99/").status_code == 404


def test_specs_pools_and_the_catalog_are_listed(api_of, project, other_project, alice):
    from scheduler.models import ResourcePool

    support.catalog()
    factories.node_spec("mlu-8", devices=8)
    mine = ResourcePool.objects.create(name="ours", dedicated=True)
    mine.projects.add(project)
    theirs = ResourcePool.objects.create(name="theirs", dedicated=True)
    theirs.projects.add(other_project)
    ResourcePool.objects.create(name="shared", dedicated=False)
    client = api_of(alice)
    assert [s["name"] for s in client.get("/api/v1/node-specs/").json()] == ["mlu-8"]
    assert {p["name"] for p in client.get("/api/v1/pools/").json()} == {"ours", "shared"}
    algorithms = {a["code"]: a for a in client.get("/api/v1/algorithms/").json()}
    assert "lora_rank" in algorithms["sft_lora"]["parameters_schema"]["properties"]
    assert "tiny-llama" in {m["name"] for m in client.get("/api/v1/base-models/").json()}
    assert "llm/sft" in {s["code"] for s in client.get("/api/v1/scenarios/").json()}


def test_the_schema_is_openapi_3_and_covers_only_the_api(client, db):
    schema = json.loads(client.get("/api/v1/schema/", {"format": "json"}).content)
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    assert "/api/v1/jobs/" in paths and "/api/v1/jobs/{id}/clone/" in paths
    assert all(path.startswith("/api/v1/") for path in paths)
    assert "token" in schema["components"]["securitySchemes"]
