"""F9.4 on every API operation, generated from the same table as the pages'
(finetune.access.LEVEL_ACTIONS): who x which operation x others' access. Not seen:
404; seen but not allowed: 403 and nothing changes; no token: 401."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import Access
from finetune import access
from finetune.models import Algorithm, Dataset, Job, JobStatus, ModelRepo
from tests import factories
from tests.finetune import pages_support as support

pytestmark = pytest.mark.django_db

#: who -> (fixture, rule): None may do everything, "f94" as the level says, "nothing"
CAST = {
    "creator": ("alice", None),
    "member": ("bob", "f94"),
    "project_admin": ("dora", None),
    "site_admin": ("admin", None),
    "outsider": ("charlie", "nothing"),
}
#: job action -> (method, path under the job, body)
JOB_CALLS = {
    "view": ("get", "", None),
    "clone": ("post", "clone/", {"name": "cloned"}),
    "change_duration": ("post", "duration/", {"duration_hours": 48}),
    "change_priority": ("post", "priority/", {"priority": 40}),
    "stop": ("post", "stop/", None),
    "delete": ("delete", "", None),
}
VIEW_TOO = ("events/", "logs/", "metrics/")


def _may(rule, model, level: str, action: str) -> tuple[bool, bool]:
    if rule is None:
        return True, True
    if rule == "nothing":
        return False, False
    allowed = access.LEVEL_ACTIONS[model][Access(level)]
    return bool(allowed), action in allowed


def _effect(job_id: int, action: str) -> bool:
    job = Job.objects.filter(pk=job_id).first()
    return {
        "view": True,
        "clone": Job.objects.filter(cloned_from_id=job_id).exists(),
        "change_duration": job is not None and job.duration.total_seconds() == 48 * 3600,
        "change_priority": job is not None and job.priority == 40,
        "stop": job is not None and job.status == JobStatus.STOPPED,
        "delete": job is None,
    }[action]


@pytest.fixture
def shared_job(project, alice, ready):
    dataset, repo, _spec = ready

    def make(level):
        return factories.job(
            project,
            alice,
            level=level,
            algorithm=Algorithm.objects.get(code="sft_lora"),
            train_dataset=dataset,
            model_repo=repo,
        )

    return make


@pytest.mark.parametrize("level", list(Access))
@pytest.mark.parametrize("action", access.JOB_ACTIONS)
@pytest.mark.parametrize("who", CAST)
def test_each_token_gets_exactly_what_f94_allows_on_jobs(
    request, api_of, shared_job, bob, dora, charlie, admin, who, action, level
):
    job = shared_job(level)
    fixture, rule = CAST[who]
    client = api_of(request.getfixturevalue(fixture))
    may_view, may_act = _may(rule, Job, level, action)
    method, path, body = JOB_CALLS[action]
    response = getattr(client, method)(f"/api/v1/jobs/{job.pk}/{path}", body, format="json")
    expected = (403 if may_view else 404) if not may_act else response.status_code
    assert response.status_code == expected, response.content
    if may_act:
        assert response.status_code in (200, 201, 204), response.content
    assert _effect(job.pk, action) is may_act or action == "view"
    if action == "view":
        for extra in VIEW_TOO:
            found = client.get(f"/api/v1/jobs/{job.pk}/{extra}")
            assert found.status_code == (200 if may_view else 404), extra


@pytest.mark.parametrize("level", list(Access))
@pytest.mark.parametrize("who", CAST)
def test_the_list_shows_a_job_exactly_to_those_who_may_view_it(
    request, api_of, shared_job, bob, dora, charlie, admin, who, level
):
    job = shared_job(level)
    fixture, rule = CAST[who]
    may_view, _act = _may(rule, Job, level, "view")
    listed = api_of(request.getfixturevalue(fixture)).get("/api/v1/jobs/").json()["results"]
    rows = [row for row in listed if row["id"] == job.pk]
    assert bool(rows) is may_view
    if rows:  # the operations it offers are those the user may take
        may = {a for a in access.JOB_ACTIONS if _may(rule, Job, level, a)[1]}
        assert set(rows[0]["actions"]) == may


@pytest.mark.parametrize("level", list(Access))
@pytest.mark.parametrize("who", CAST)
def test_data_sets_and_repos_follow_f94(
    request, api_of, project, alice, bob, dora, charlie, admin, who, level
):
    dataset = support.good_dataset(project, alice, level=level, name=f"d-{who}")
    repo = factories.model_repo(project, alice, level=level)
    fixture, rule = CAST[who]
    client = api_of(request.getfixturevalue(fixture))
    for model, url in (
        (Dataset, f"/api/v1/datasets/{dataset.pk}/"),
        (ModelRepo, f"/api/v1/repos/{repo.pk}/"),
    ):
        may_view, _act = _may(rule, model, level, "view")
        assert client.get(url).status_code == (200 if may_view else 404), url
    may_view, may_change = _may(rule, Dataset, level, "change")
    validate = client.post(f"/api/v1/datasets/{dataset.pk}/validate/")
    assert validate.status_code == (202 if may_change else 403 if may_view else 404)
    versions = client.get(f"/api/v1/repos/{repo.pk}/versions/")
    assert versions.status_code == (200 if _may(rule, ModelRepo, level, "view")[0] else 404)


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/api/v1/jobs/"),
        ("post", "/api/v1/jobs/"),
        ("get", "/api/v1/jobs/1/"),
        ("post", "/api/v1/jobs/1/stop/"),
        ("get", "/api/v1/datasets/"),
        ("get", "/api/v1/repos/"),
        ("get", "/api/v1/node-specs/"),
        ("post", "/api/v1/prediction/"),
        ("get", "/v1/fine_tuning/jobs"),
        ("post", "/v1/files"),
    ],
)
def test_without_a_token_every_endpoint_is_a_401(db, method, path):
    assert getattr(APIClient(), method)(path).status_code == 401
