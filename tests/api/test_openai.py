"""/v1/: OpenAI's fine-tuning API, driven by the official ``openai`` client against a
live server: a chat file uploaded, a job made, trained for real on a tiny model on
this machine, its events and checkpoints listed; another cancelled. And the shapes:
preference files, statuses, errors in OpenAI's form."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import openai
import pytest
from rest_framework.test import APIClient

from accounts import tokens
from finetune.catalog_sync import sync_catalog
from finetune.models import Dataset, Job, JobStatus, PretrainedModel, ProjectDefaults
from finetune.states import transition
from finetune.storage import resolve
from scheduler import admission, inventory
from scheduler.executors import get_executor
from scheduler.models import DeviceType, NodeSpec
from tests.api.conftest import client_of
from tests.realjobs import settled

CHAT = [
    {
        "messages": [
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": f"What is {i} plus {i}?"},
            {"role": "assistant", "content": f"{2 * i}.", "weight": 1},
        ]
    }
    for i in range(16)
]
PREFERENCE = [
    {
        "input": {"messages": [{"role": "user", "content": f"Name a colour ({i})."}]},
        "preferred_output": [{"role": "assistant", "content": "Blue."}],
        "non_preferred_output": [{"role": "assistant", "content": "I will not."}],
    }
    for i in range(8)
]

# a live server's tests are transactional; serialized rollback, as every transactional
# test of the suite has (tests/e2e/conftest.py, page, says why)
TRANSACTIONAL = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def platform(settings, project, alice):
    """The catalog, a tiny base model, a CPU node spec as the project's default, the
    local executor's node; validations run in the request (as a worker would)."""
    from config.celery import app
    from trainer.tiny import build_tiny_llm

    settings.JINGTIAO_EXECUTOR = "local"
    settings.JINGTIAO_STOP_GRACE_SECONDS = 2
    settings.JINGTIAO_REPORT_URL = "http://127.0.0.1:9"
    get_executor.cache_clear()
    sync_catalog()
    build_tiny_llm(resolve("models/tiny-llama"))
    PretrainedModel.objects.create(
        name="tiny-llama", task_type="llm", family="llama", location="models/tiny-llama"
    )
    cpu = NodeSpec.objects.create(
        name="cpu-1c2g", cpu_millis=1000, memory_mib=2048, device_type=DeviceType.NONE
    )
    ProjectDefaults.objects.create(project=project, node_spec=cpu, duration_hours=1)
    inventory.sync_nodes(list(get_executor().nodes()))
    app.conf.task_always_eager = True
    yield get_executor()
    app.conf.task_always_eager = False
    get_executor.cache_clear()


def _uploaded(api: APIClient, path: Path, capture):
    """POST /v1/files of ``path``, its validation run on commit (as the data worker would)."""
    with path.open("rb") as handle, capture(execute=True):
        return api.post("/v1/files", {"file": handle, "purpose": "fine-tune"}, format="multipart")


def _client(live_server, user, projects) -> openai.OpenAI:
    _token, key = tokens.issue(user, name="openai", projects=projects)
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=key, max_retries=0)


@TRANSACTIONAL
@pytest.mark.slow
def test_the_openai_client_fine_tunes_the_tiny_model_end_to_end(
    live_server, platform, project, alice, tmp_path
):
    client = _client(live_server, alice, [project])
    uploaded = client.files.create(
        file=_jsonl(tmp_path / "chat.jsonl", CHAT).open("rb"), purpose="fine-tune"
    )
    assert uploaded.id.startswith("file-") and uploaded.status in ("uploaded", "processed")
    found = client.files.retrieve(uploaded.id)  # validated meanwhile, as by the data worker
    assert (found.filename, found.status) == ("chat", "processed") and found.bytes > 0

    created = client.fine_tuning.jobs.create(
        model="tiny-llama",
        training_file=uploaded.id,
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}},
        },
        suffix="adder",
        seed=7,
        metadata={"team": "search"},
    )
    # queued, or admitted already by the admission pass its creation asked for
    assert created.status in ("queued", "running") and created.model == "tiny-llama"
    assert created.hyperparameters.n_epochs == 1 and created.seed == 7
    assert created.metadata == {"team": "search"} and created.user_provided_suffix == "adder"
    job = Job.objects.get(pk=int(created.id.removeprefix("ftjob-")))
    assert job.spec_choices.get().spec.name == "cpu-1c2g"
    assert job.parameters["epochs"] == 1 and job.parameters["batch_size"] == 4

    admission.run_admission()
    assert client.fine_tuning.jobs.retrieve(created.id).status == "running"
    job = settled(platform, job)
    assert job.status == JobStatus.SUCCEEDED, job.status_reason

    done = client.fine_tuning.jobs.retrieve(created.id)
    assert done.status == "succeeded" and done.finished_at is not None
    assert done.fine_tuned_model == f"{job.model_repo.name}:v1"
    events = client.fine_tuning.jobs.list_events(created.id, limit=50)
    messages = [event.message for event in events.data]
    assert events.data[0].created_at >= events.data[-1].created_at  # newest first
    assert any("created" in m.lower() for m in messages)
    checkpoints = client.fine_tuning.jobs.checkpoints.list(created.id)
    assert checkpoints.data[0].fine_tuned_model_checkpoint == done.fine_tuned_model
    # the model's step is the training's last
    assert checkpoints.data[0].step_number == job.output_version.metrics["steps"] > 0
    assert [j.id for j in client.fine_tuning.jobs.list(limit=10).data] == [created.id]

    other = client.fine_tuning.jobs.create(model="tiny-llama", training_file=uploaded.id)
    cancelled = client.fine_tuning.jobs.cancel(other.id)
    assert cancelled.status == "cancelled"
    page = client.fine_tuning.jobs.list(limit=1)
    assert [j.id for j in page.data] == [other.id] and page.has_more
    after = client.fine_tuning.jobs.list(limit=1, after=other.id)
    assert [j.id for j in after.data] == [created.id]


@TRANSACTIONAL
def test_errors_come_in_openais_shape_and_the_client_raises_them(
    live_server, platform, project, alice, charlie, tmp_path
):
    client = _client(live_server, alice, [project])
    with pytest.raises(openai.BadRequestError) as bad_model:
        client.fine_tuning.jobs.create(model="gpt-9", training_file="file-1")
    assert bad_model.value.code == "model_not_found" and bad_model.value.param == "model"
    with pytest.raises(openai.BadRequestError) as no_file:
        client.fine_tuning.jobs.create(model="tiny-llama", training_file="file-999999")
    assert no_file.value.param == "training_file"
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-424242")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\n{"text": "no"}\n')
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=bad.open("rb"), purpose="fine-tune")
    assert "Line 2" in refused.value.message and refused.value.param == "file"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=f"{live_server.url}/v1", api_key="jt_wrong", max_retries=0
        ).files.list()
    # someone else's job is not there at all
    uploaded = client.files.create(
        file=_jsonl(tmp_path / "c.jsonl", CHAT).open("rb"), purpose="fine-tune"
    )
    mine = client.fine_tuning.jobs.create(model="tiny-llama", training_file=uploaded.id)
    with pytest.raises(openai.NotFoundError):
        _client(live_server, charlie, list(charlie.projects.all())).fine_tuning.jobs.retrieve(
            mine.id
        )


@pytest.mark.django_db
def test_a_preference_file_becomes_a_dpo_data_set_and_a_dpo_job(
    platform, project, alice, tmp_path, django_capture_on_commit_callbacks
):
    api = client_of(alice, [project])
    made = _uploaded(
        api, _jsonl(tmp_path / "prefs.jsonl", PREFERENCE), django_capture_on_commit_callbacks
    )
    assert made.status_code == 200, made.json()
    dataset = Dataset.objects.get(pk=int(made.json()["id"].removeprefix("file-")))
    assert dataset.scenario.code == "llm/rl" and dataset.validation_status == "valid"
    first = json.loads(resolve(dataset.location).read_text().splitlines()[0])
    assert first == {"prompt": "Name a colour (0).", "chosen": "Blue.", "rejected": "I will not."}
    wrong = api.post(
        "/v1/fine_tuning/jobs",
        {"model": "tiny-llama", "training_file": made.json()["id"]},
        format="json",
    )
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "invalid_file_format"
    job = api.post(
        "/v1/fine_tuning/jobs",
        {
            "model": "tiny-llama",
            "training_file": made.json()["id"],
            "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}},
        },
        format="json",
    )
    assert job.status_code == 200, job.json()
    assert job.json()["method"]["type"] == "dpo"
    assert Job.objects.get(pk=int(job.json()["id"][6:])).parameters["beta"] == 0.2


@pytest.mark.django_db
def test_statuses_map_to_openais(platform, project, alice, tmp_path):
    from api.openai.objects import job_object
    from tests import factories

    job = factories.job(project, alice, waiting_for_data=True)
    assert job_object(job)["status"] == "validating_files"
    Job.objects.filter(pk=job.pk).update(waiting_for_data=False)
    job.refresh_from_db()
    assert job_object(job)["status"] == "queued"
    transition(job, JobStatus.RUNNING)
    assert job_object(job)["status"] == "running"
    transition(job, JobStatus.EXPIRED, reason="ran past its duration")
    found = job_object(job)
    assert found["status"] == "failed" and found["error"]["code"] == "expired"
    assert "duration" in found["error"]["message"]
    stopped = factories.job(project, alice, status=JobStatus.STOPPED)
    assert job_object(stopped)["status"] == "cancelled"
    assert timedelta(0) < job.duration


@pytest.mark.django_db
def test_a_token_of_several_projects_names_one_with_the_openai_project_header(
    platform, project, other_project, alice
):
    from accounts.models import Membership

    Membership.objects.create(project=other_project, user=alice)
    api = client_of(alice, [project, other_project])
    assert api.get("/v1/fine_tuning/jobs").json()["error"]["code"] == "project_required"
    assert api.get("/v1/fine_tuning/jobs", HTTP_OPENAI_PROJECT="research").status_code == 200
    assert api.get("/v1/fine_tuning/jobs", HTTP_OPENAI_PROJECT=str(project.pk)).status_code == 200
    assert api.get("/v1/fine_tuning/jobs", HTTP_OPENAI_PROJECT="nope").status_code == 403


@pytest.mark.django_db
def test_a_refused_job_leaves_no_save_address_behind(
    platform, project, alice, tmp_path, django_capture_on_commit_callbacks
):
    from finetune.models import ModelRepo

    api = client_of(alice, [project])
    made = _uploaded(api, _jsonl(tmp_path / "chat.jsonl", CHAT), django_capture_on_commit_callbacks)
    body = {"model": "tiny-llama", "training_file": made.json()["id"]}
    refused = api.post(
        "/v1/fine_tuning/jobs", {**body, "hyperparameters": {"n_epochs": 0}}, format="json"
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "hyperparameters.n_epochs"
    assert not ModelRepo.objects.exists() and not Job.objects.exists()
    assert not any(resolve(f"repos/{project.pk}").glob("*"))
    assert api.post("/v1/fine_tuning/jobs", body, format="json").status_code == 200
    assert ModelRepo.objects.get().name == "alice-llm-sft"


@pytest.mark.django_db
def test_a_deleted_repos_folder_is_neither_taken_over_nor_removed_by_a_refusal(
    platform, project, alice, tmp_path, django_capture_on_commit_callbacks
):
    """A repo deleted in the admin leaves its files; the fallback save address is a new
    folder beside them, and a refused job removes only that one."""
    from finetune.models import ModelRepo

    left = resolve(f"repos/{project.pk}/alice-llm-sft/v1")
    left.mkdir(parents=True)
    (left / "model.safetensors").write_bytes(b"old")
    api = client_of(alice, [project])
    made = _uploaded(api, _jsonl(tmp_path / "chat.jsonl", CHAT), django_capture_on_commit_callbacks)
    body = {"model": "tiny-llama", "training_file": made.json()["id"]}
    refused = api.post(
        "/v1/fine_tuning/jobs", {**body, "hyperparameters": {"n_epochs": 0}}, format="json"
    )
    assert refused.status_code == 400
    assert (left / "model.safetensors").read_bytes() == b"old"
    assert api.post("/v1/fine_tuning/jobs", body, format="json").status_code == 200
    repo = ModelRepo.objects.get()
    assert repo.location == f"repos/{project.pk}/alice-llm-sft-2"
    assert (left / "model.safetensors").read_bytes() == b"old"


@pytest.mark.django_db
def test_hostile_bodies_and_filters_are_refused_in_openais_shape(
    platform, project, alice, tmp_path, monkeypatch
):
    from api.openai import files

    api = client_of(alice, [project])
    method = api.post(
        "/v1/fine_tuning/jobs",
        {"model": "tiny-llama", "training_file": "file-1", "method": {"type": ["x"]}},
        format="json",
    )
    assert method.status_code == 400 and method.json()["error"]["param"] == "method.type"
    for key in ("a__regex", "a__contains", "a'b"):
        found = api.get("/v1/fine_tuning/jobs", {f"metadata[{key}]": "("})
        assert found.status_code == 200 and found.json()["data"] == []

    def upload(name: str, content: bytes):
        path = tmp_path / name
        path.write_bytes(content)
        with path.open("rb") as handle:
            return api.post(
                "/v1/files", {"file": handle, "purpose": "fine-tune"}, format="multipart"
            )

    odd_parts = {
        "input": {"messages": [{"role": "user", "content": [{"text": 1}, {"text": None}]}]},
        "preferred_output": [{"role": "assistant", "content": "a"}],
        "non_preferred_output": [{"role": "assistant", "content": "b"}],
    }
    assert upload("parts.jsonl", json.dumps(odd_parts).encode() + b"\n").status_code == 200
    deep = upload("deep.jsonl", b"[" * 100_000 + b"\n")
    assert deep.status_code == 400 and "Line 1 is not JSON" in deep.json()["error"]["message"]
    monkeypatch.setattr(files, "MAX_LINE_BYTES", 1000)
    long = upload("long.jsonl", json.dumps(CHAT[0]).encode() + b"\n" + b"x" * 5000)
    assert long.status_code == 400 and "Line 2 is longer" in long.json()["error"]["message"]
    split = b"".join(json.dumps(row).encode() + b"\n" for row in CHAT * 200)  # 3 chunks
    assert len(split) > 3 * 65536
    many = upload("many.jsonl", split)  # lines across chunks, each converted whole
    assert many.status_code == 200
    dataset = Dataset.objects.get(pk=int(many.json()["id"].removeprefix("file-")))
    rows = resolve(dataset.location).read_text().splitlines()
    assert len(rows) == len(CHAT) * 200 and all(json.loads(row)["messages"] for row in rows)
