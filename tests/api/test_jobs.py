"""/api/v1/jobs/: what the job pages do, through the same form, gate and services."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Access
from finetune.models import Job, JobEvent, JobStatus
from tests import factories

pytestmark = pytest.mark.django_db
JOBS = "/api/v1/jobs/"


def test_it_creates_a_job_as_the_create_form_does(api_of, alice, ready_draft):
    response = api_of(alice).post(JOBS, ready_draft, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    job = Job.objects.get(pk=body["id"])
    assert (job.name, job.creator, job.status) == ("api-run", alice, JobStatus.QUEUED)
    assert body["status"] == "queued" and body["node_specs"] == ready_draft["node_specs"]
    assert job.duration.total_seconds() == 2 * 3600
    # the schema's defaults, as the page would have posted them
    assert job.parameters["lora_rank"] == 8 and job.parameters["epochs"] >= 1
    assert job.events.filter(kind=JobEvent.Kind.CREATED).exists()
    assert body["page_url"] == f"/jobs/{job.pk}/"


def test_every_error_is_given_per_field_at_once(api_of, alice, ready_draft):
    draft = {
        **ready_draft,
        "name": "",
        "node_specs": [999999],
        "duration_hours": -1,
        "parameters": {"lora_rank": 0, "no_such": 1},
    }
    response = api_of(alice).post(JOBS, draft, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert errors == {"parameters": {"no_such": ["The algorithm has no parameter of this name."]}}
    del draft["parameters"]["no_such"]
    errors = api_of(alice).post(JOBS, draft, format="json").json()
    assert set(errors) == {"name", "node_specs", "duration_hours", "parameters"}
    assert "lora_rank" in errors["parameters"]
    assert not Job.objects.exists()


def test_a_custom_duration_and_a_preset_both_work(api_of, alice, ready_draft):
    client = api_of(alice)
    for hours, seconds in ((1.5, 5400), (48, 172800)):
        body = client.post(JOBS, {**ready_draft, "duration_hours": hours}, format="json").json()
        assert Job.objects.get(pk=body["id"]).duration.total_seconds() == seconds


def test_it_refuses_access_more_open_than_the_data_allows(api_of, project, alice, ready_draft):
    from finetune.access import set_access
    from finetune.models import Dataset

    set_access(Dataset.objects.get(pk=ready_draft["train_dataset"]), Access.READ_ONLY)
    response = api_of(alice).post(JOBS, {**ready_draft, "access": Access.READ_WRITE}, format="json")
    assert response.status_code == 400
    assert "at most" in response.json()["access"][0]


def test_a_member_may_not_use_a_data_set_they_cannot_see(api_of, project, alice, bob, ready):
    from finetune.access import set_access
    from tests.finetune import pages_support as support

    hidden = support.good_dataset(project, alice, level=Access.NONE, name="private")
    _dataset, repo, spec = ready
    set_access(repo, Access.READ_WRITE)
    draft = {
        "name": "x",
        "scenario": hidden.scenario_id,
        "algorithm": factories.Algorithm.objects.get(code="sft_lora").pk,
        "pretrained_model": factories.PretrainedModel.objects.get(name="tiny-llama").pk,
        "train_dataset": hidden.pk,
        "model_repo": repo.pk,
        "node_specs": [spec.pk],
    }
    response = api_of(bob).post(JOBS, draft, format="json")
    assert response.status_code == 400 and "train_dataset" in response.json()


def test_the_project_must_be_named_when_the_token_has_several(
    api_of, project, other_project, alice, ready_draft
):
    from accounts.models import Membership

    Membership.objects.create(project=other_project, user=alice)
    client = api_of(alice)
    assert "project" in client.post(JOBS, ready_draft, format="json").json()
    assert (
        client.post(JOBS, {**ready_draft, "project": project.pk}, format="json").status_code == 201
    )
    elsewhere = client.post(JOBS, {**ready_draft, "project": 999}, format="json")
    assert elsewhere.status_code == 400 and "project" in elsewhere.json()


def test_the_list_filters_sorts_and_pages_as_the_page_does(api_of, project, alice, bob):
    for index in range(5):
        factories.job(project, alice, name=f"alpha-{index}")
    factories.job(project, bob, name="beta", status=JobStatus.RUNNING)
    client = api_of(alice)
    assert client.get(JOBS, {"q": "alpha"}).json()["count"] == 5
    assert [j["name"] for j in client.get(JOBS, {"status": "running"}).json()["results"]] == [
        "beta"
    ]
    assert client.get(JOBS, {"creator": "bob"}).json()["count"] == 1
    page = client.get(JOBS, {"per_page": 2, "sort": "name"}).json()
    assert [j["name"] for j in page["results"]] == ["alpha-0", "alpha-1"]
    assert page["next"] and page["count"] == 6
    assert client.get(JOBS, {"project": "x"}).status_code == 400


def test_the_list_costs_the_same_queries_for_few_jobs_and_many(api_of, project, alice):
    client = api_of(alice)
    factories.job(project, alice)
    client.get(JOBS)  # the token's first use writes its last-used time
    with CaptureQueriesContext(connection) as few:
        assert client.get(JOBS).status_code == 200
    for _ in range(15):
        factories.job(project, alice, status=JobStatus.QUEUED)
    with CaptureQueriesContext(connection) as many:
        assert client.get(JOBS).json()["count"] == 16
    assert len(many) == len(few)


def test_a_queued_job_shows_its_prediction(api_of, project, alice, ready_draft):
    client = api_of(alice)
    created = client.post(JOBS, ready_draft, format="json").json()
    body = client.get(f"{JOBS}{created['id']}/").json()
    prediction = body["prediction"]
    assert prediction is not None and prediction["verdict"] in ("now", "queue")
    assert prediction["position"] >= 1 and prediction["message"]


def test_clone_takes_the_jobs_fields_and_the_bodys_changes(api_of, alice, ready_draft):
    client = api_of(alice)
    original = client.post(JOBS, ready_draft, format="json").json()
    clone = client.post(
        f"{JOBS}{original['id']}/clone/", {"name": "again", "priority": 40}, format="json"
    )
    assert clone.status_code == 201, clone.json()
    job = Job.objects.get(pk=clone.json()["id"])
    assert (job.name, job.priority, job.cloned_from_id) == ("again", 40, original["id"])
    assert job.parameters == Job.objects.get(pk=original["id"]).parameters


def test_stop_priority_duration_and_delete(api_of, project, alice):
    job = factories.job(project, alice)
    client = api_of(alice)
    assert (
        client.post(f"{JOBS}{job.pk}/priority/", {"priority": 40}, format="json").json()["priority"]
        == 40
    )
    bad = client.post(f"{JOBS}{job.pk}/priority/", {"priority": 41}, format="json")
    assert bad.status_code == 400 and "priority" in bad.json()
    changed = client.post(f"{JOBS}{job.pk}/duration/", {"duration_hours": 5}, format="json")
    assert changed.json()["duration_hours"] == 5
    # numbers as text read as the numbers they are, as the form reads them
    as_text = client.post(f"{JOBS}{job.pk}/duration/", {"duration_hours": "4"}, format="json")
    assert as_text.status_code == 200 and as_text.json()["duration_hours"] == 4
    as_text = client.post(f"{JOBS}{job.pk}/priority/", {"priority": "30"}, format="json")
    assert as_text.status_code == 200 and as_text.json()["priority"] == 30
    assert (
        client.post(f"{JOBS}{job.pk}/duration/", {"duration_hours": 0}, format="json").status_code
        == 400
    )
    assert client.post(f"{JOBS}{job.pk}/stop/").json()["status"] == "stopped"
    late = client.post(f"{JOBS}{job.pk}/duration/", {"duration_hours": 6}, format="json")
    assert late.status_code == 400 and "non_field_errors" in late.json()
    assert client.delete(f"{JOBS}{job.pk}/").status_code == 204
    assert not Job.objects.filter(pk=job.pk).exists()


def test_events_logs_and_metrics(api_of, project, alice):
    job = factories.job(project, alice)
    client = api_of(alice)
    client.post(f"{JOBS}{job.pk}/priority/", {"priority": 30}, format="json")
    events = client.get(f"{JOBS}{job.pk}/events/").json()
    assert any("Priority changed" in e["message"] for e in events["events"])
    logs = client.get(f"{JOBS}{job.pk}/logs/").json()
    assert logs["chunks"] == [] and logs["more"] is False
    assert client.get(f"{JOBS}{job.pk}/logs/", {"since": "nonsense"}).status_code == 400
    metrics = client.get(f"{JOBS}{job.pk}/metrics/").json()
    assert metrics["status"] == "queued" and "training" in metrics
    assert client.get(f"{JOBS}{job.pk}/metrics/", {"range": "century"}).status_code == 400


def test_messages_come_in_the_requests_language(api_of, alice, ready_draft):
    response = api_of(alice).post(
        JOBS, {**ready_draft, "name": ""}, format="json", HTTP_ACCEPT_LANGUAGE="zh-hans"
    )
    assert response.json()["name"] == ["这个字段是必填项。"]


def test_the_draft_prediction_answers_from_the_create_fields(api_of, alice, ready_draft):
    client = api_of(alice)
    found = client.post("/api/v1/prediction/", ready_draft, format="json")
    assert found.status_code == 200 and found.json()["verdict"] == "now"
    empty = client.post("/api/v1/prediction/", {"name": "x"}, format="json")
    assert empty.status_code == 400 and "node_specs" in empty.json()
    endless = client.post(
        "/api/v1/prediction/", {**ready_draft, "duration_hours": 1e12}, format="json"
    )
    assert endless.status_code == 400 and "duration_hours" in endless.json()
    for odd in ({"node_names": [1]}, {"driver_version": 5}):
        found = client.post("/api/v1/prediction/", {**ready_draft, **odd}, format="json")
        assert found.status_code in (200, 400), found.content
