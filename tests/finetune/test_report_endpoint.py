"""The report endpoint: the trainer's metrics and resource samples (F7.1)."""

import json
import time

import pytest
from django.urls import reverse

from finetune.models import Job, JobStatus, MetricPoint, ReportBatch, ResourceSample
from finetune.states import transition
from scheduler.launching import hash_token
from tests import factories
from tests.finetune.conftest import REPORT_TOKEN as TOKEN

pytestmark = pytest.mark.django_db


def _body(job, seq=1, **extra) -> dict:
    now = time.time()
    return {
        "job_id": job.pk,
        "worker": "node-a-rank0",
        "seq": seq,
        "metrics": [
            {"step": 10, "epoch": 0.5, "loss": 1.9, "learning_rate": 2e-4, "time": now},
            {"step": 20, "eval_loss": 1.7, "test_loss": 1.8, "progress": 0.4, "time": now},
        ],
        "resources": [
            {"time": now, "cpu_percent": 180.0, "memory_bytes": 2**31, "net_rx_bytes": 10}
        ],
        **extra,
    }


def _at_now(value):
    """The cases' times are offsets from NOW, taken when the case runs."""
    if isinstance(value, dict):
        return {key: _at_now(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_at_now(item) for item in value]
    if isinstance(value, _Now):
        return time.time() + value.offset
    return value


class _Now:
    def __init__(self, offset: float = 0) -> None:
        self.offset = offset

    def __add__(self, seconds: float) -> "_Now":
        return _Now(self.offset + seconds)


NOW = _Now()


def _post(client, job, body, token=TOKEN, raw=None):
    return client.post(
        reverse("job_report", args=[job.pk]),
        raw if raw is not None else json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def test_a_batch_is_stored_with_its_metrics_and_samples(client, running):
    response = _post(client, running, _body(running))
    assert response.status_code == 200
    assert response.json() == {"stored": True, "duplicate": False, "metrics": 2, "resources": 1}
    losses = list(running.metric_points.order_by("step").values_list("step", "loss", "eval_loss"))
    assert losses == [(10, 1.9, None), (20, None, 1.7)]
    sample = ResourceSample.objects.get(job=running)
    assert (sample.worker, sample.memory_bytes, sample.cpu_percent) == (
        "node-a-rank0",
        2**31,
        180.0,
    )


def test_a_batch_sent_twice_is_stored_once(client, running):
    _post(client, running, _body(running))
    again = _post(client, running, _body(running))
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert MetricPoint.objects.filter(job=running).count() == 2
    assert ReportBatch.objects.filter(job=running).count() == 1
    assert _post(client, running, _body(running, seq=2)).json()["stored"] is True


@pytest.mark.parametrize("token", ["wrong", ""])
def test_a_wrong_token_is_refused(client, running, token):
    response = _post(client, running, _body(running), token=token)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert not MetricPoint.objects.exists()


def test_an_unknown_job_answers_like_a_wrong_token(client, running):
    response = client.post(
        reverse("job_report", args=[running.pk + 1000]),
        json.dumps(_body(running)),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
    )
    assert response.status_code == 401


def test_a_job_that_ended_takes_no_more_reports(client, running):
    transition(running, JobStatus.SUCCEEDED)
    response = _post(client, running, _body(running))
    assert response.status_code == 410
    assert "succeeded" in response.json()["error"]
    assert response.json()["stop"] is True  # the worker stops training (trainer/reporting.py)


def test_a_run_whose_token_was_superseded_by_a_relaunch_is_told_to_stop(client, running):
    Job.objects.filter(pk=running.pk).update(report_token_hash=hash_token("the relaunch's"))
    response = _post(client, running, _body(running))
    assert response.status_code == 401
    assert response.json() == {"error": "unknown job or wrong token", "stop": True}


@pytest.mark.parametrize(
    ("body", "raw", "words"),
    [
        (None, b"{not json", "the body is not JSON"),
        (None, b"[1, 2]", "must be a JSON object"),
        ({"seq": 0}, None, "seq must be a whole number from 1"),
        ({"job_id": 999999}, None, "job_id must be"),
        ({"worker": ""}, None, "worker must be a name"),
        ({"metrics": {"loss": 1}}, None, "metrics must be a list"),
        ({"metrics": [{"loss": "low", "time": NOW}]}, None, "metrics[0].loss must be a number"),
        ({"metrics": [{"loss": 1.0}]}, None, "metrics[0].time is required"),
        (
            {"resources": [{"time": NOW, "memory_bytes": -5}]},
            None,
            "resources[0].memory_bytes must be from 0",
        ),
        # Values no trainer sends (issue 11): each is refused, naming the field.
        ({"seq": 10**20}, None, "seq must be a whole number from 1 to 2147483647"),
        ({"seq": 2**63}, None, "seq must be a whole number from 1"),
        ({"metrics": [{"step": 10**20, "time": NOW}]}, None, "metrics[0].step must be from 0"),
        ({"metrics": [{"step": 2**63 - 1, "time": NOW}]}, None, "metrics[0].step must be from"),
        ({"metrics": [{"step": 3.5, "time": NOW}]}, None, "metrics[0].step must be a whole"),
        (
            {"resources": [{"time": NOW, "memory_bytes": 10**30}]},
            None,
            "resources[0].memory_bytes must be from 0",
        ),
        ({"metrics": [{"time": 253402300000.0}]}, None, "metrics[0].time must"),
        ({"metrics": [{"time": 1.0}]}, None, "metrics[0].time must lie within the job's run"),
        ({"metrics": [{"time": NOW + 3600}]}, None, "metrics[0].time must lie within"),
        (
            {"resources": [{"time": NOW, "cpu_percent": 1e308}]},
            None,
            "resources[0].cpu_percent must be from 0",
        ),
        (
            {"resources": [{"time": NOW, "device_util": 101}]},
            None,
            "resources[0].device_util must be from 0 to 100",
        ),
        (
            {"resources": [{"time": NOW, "device_util": -1}]},
            None,
            "resources[0].device_util must be from 0 to 100",
        ),
        ({"metrics": [{"time": NOW, "progress": 1.5}]}, None, "metrics[0].progress must be"),
        ({"metrics": [{"time": NOW, "learning_rate": -1}]}, None, "learning_rate must be"),
        ({"worker": "node\x00a"}, None, "worker must be a name"),
        ({"worker": "<b>node</b>"}, None, "worker must be a name"),
        ({"worker": "w" * 129}, None, "worker must be a name"),
        (
            {"resources": [{"time": NOW, "worker": "<script>"}]},
            None,
            "resources[0].worker must be a name",
        ),
        (None, b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (None, b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
        ({"job_id": True}, None, "job_id must be"),
        ({"metrics": [{"time": NOW, "epoch": float("inf")}]}, None, "epoch must be a finite"),
    ],
)
def test_a_malformed_body_is_refused_saying_why(client, running, body, raw, words):
    payload = {**_body(running), **_at_now(body or {})}
    response = _post(client, running, payload, raw=raw)
    assert response.status_code == 400
    assert words in response.json()["error"]
    assert not MetricPoint.objects.exists() and not ReportBatch.objects.exists()
    assert not ResourceSample.objects.exists()


def test_a_diverged_loss_is_stored_as_missing(client, running):
    body = _body(running)
    body["metrics"][0]["loss"] = float("nan")
    response = _post(client, running, body)
    assert response.status_code == 200
    assert running.metric_points.get(step=10).loss is None


def test_a_body_that_is_not_sent_as_json_is_refused(client, running):
    response = client.post(
        reverse("job_report", args=[running.pk]),
        json.dumps(_body(running)),
        content_type="text/plain",
        HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
    )
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]
    assert not ReportBatch.objects.exists()


def test_an_oversized_body_is_refused(client, running, settings):
    settings.JINGTIAO_REPORT_MAX_BYTES = 2048
    body = _body(running)
    body["metrics"] = body["metrics"] * 100
    response = _post(client, running, body)
    assert response.status_code == 413
    assert "at most 2048 bytes" in response.json()["error"]


def test_a_job_reporting_too_often_is_asked_to_slow_down(client, running, settings):
    from django.core.cache import cache

    cache.delete(f"jingtiao:report-rate:{running.pk}")
    settings.JINGTIAO_REPORT_RATE_PER_MINUTE = 3
    codes = [_post(client, running, _body(running, seq=n)).status_code for n in range(1, 6)]
    assert codes == [200, 200, 200, 429, 429]
    assert ReportBatch.objects.filter(job=running).count() == 3


def test_each_worker_of_a_job_has_its_own_allowance(client, running, settings):
    from django.core.cache import cache

    cache.delete(f"jingtiao:report-rate:{running.pk}")
    Job.objects.filter(pk=running.pk).update(node_count=2)
    settings.JINGTIAO_REPORT_RATE_PER_MINUTE = 2
    codes = [_post(client, running, _body(running, seq=n)).status_code for n in range(1, 6)]
    assert codes == [200, 200, 200, 200, 429]


def test_a_diverged_loss_is_kept_as_missing(client, running):
    raw = json.dumps(_body(running)).replace('"loss": 1.9', '"loss": NaN').encode()
    assert _post(client, running, None, raw=raw).status_code == 200
    assert MetricPoint.objects.get(job=running, step=10).loss is None


# serialized_rollback: a transactional test before it that had one leaves the tables
# flushed without the content types and permissions (Django re-creates them only for
# tests that restore the serialized database), and guardian needs the permissions.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_trainers_own_reporter_delivers_to_the_endpoint(live_server, project, alice):
    from trainer.reporting import Reporter

    job = factories.job(project, alice)
    transition(job, JobStatus.RUNNING)
    Job.objects.filter(pk=job.pk).update(report_token_hash=hash_token(TOKEN))
    url = live_server.url + reverse("job_report", args=[job.pk])
    reporter = Reporter(url, TOKEN, job.pk, "local-rank0", interval=0.1)
    reporter.metric(step=1, loss=2.5, time=time.time())
    reporter.resource(time=time.time(), cpu_percent=50.0, memory_bytes=1024)
    assert reporter.close(timeout=10) is True
    assert MetricPoint.objects.get(job=job).loss == 2.5
    assert ResourceSample.objects.get(job=job).worker == "local-rank0"


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'"metrics": [{"time": NOW, "loss": 1' + b"0" * 400 + b"}]", "too large for a number"),
        (b'"metrics": [{"time": NOW, "step": ' + b"9" * 5000 + b"}]", "too many digits"),
    ],
)
def test_numbers_past_what_python_holds_are_refused(client, running, raw, words):
    head = f'{{"job_id": {running.pk}, "worker": "w0", "seq": 1, '.encode()
    body = head + raw.replace(b"NOW", str(time.time()).encode()) + b"}"
    response = _post(client, running, None, raw=body)
    assert response.status_code == 400
    assert words in response.json()["error"]
