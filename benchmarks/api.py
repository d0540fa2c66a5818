"""How fast is the REST API at 100,000 jobs? (issue 16, "Benchmark")

The data set of benchmarks/list_page.py (its own PostgreSQL database, 100,000 jobs
across 200 projects and 1,000 users, grants included); then, with a personal token
of a member of five projects:
- the job list (/api/v1/jobs/): the first page, a name search and a status filter,
  and its query count at 20 and at 100 jobs a page (constant: no N+1);
- creating a job (POST /api/v1/jobs/) through the create form's checks, its answer
  with its prediction: with the worker's pass between creates, and back to back;
- a webhook delivery: from a job's status change to a local receiver holding the
  signed request (the delivery task run in this process, as a worker runs it).
Prints each figure on a line of its own. Runs with no arguments:

    .venv/bin/python benchmarks/api.py
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import benchdb  # noqa: E402
import list_page  # noqa: E402

REPEATS = 40
CREATES = 40
BENCH_DB = "jingtiao_bench_api"


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def _timed(call, repeats: int) -> list[float]:
    found = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        found.append((time.perf_counter() - started) * 1000)
    return found


def _client(user):
    from rest_framework.test import APIClient

    from accounts import tokens
    from accounts.projects import projects_of

    _token, key = tokens.issue(user, name="bench", projects=projects_of(user))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def measure_list(client) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    cases = {
        "first_page": {},
        "name_search": {"q": "job-12"},
        "status_filter": {"status": "running"},
    }
    timings: list[float] = []
    counts = {}
    for label, params in cases.items():
        for _warm in range(3):
            assert client.get("/api/v1/jobs/", params).status_code == 200
        case = _timed(lambda p=params: client.get("/api/v1/jobs/", p), REPEATS)
        timings += case
        for per_page in (20, 100):
            with CaptureQueriesContext(connection) as captured:
                client.get("/api/v1/jobs/", {**params, "per_page": per_page})
            counts[(label, per_page)] = len(captured.captured_queries)
        print(f"api_{label}_p95_ms: {_p95(case):.1f} ms")
    print(f"api_job_list_p50_ms: {statistics.median(timings):.1f} ms")
    print(f"api_job_list_p95_ms: {_p95(timings):.1f} ms")
    print(f"api_job_list_queries: {max(v for (_l, n), v in counts.items() if n == 20)} queries")
    print(
        "api_job_list_queries_per_page_100: "
        f"{max(v for (_l, n), v in counts.items() if n == 100)} queries"
    )


def _ready(user):
    """A project of the member's with a validated data set and a repo inside its areas,
    and a node to run on: what a job needs to be created at all."""
    from django.conf import settings

    from accounts.models import Access
    from accounts.projects import projects_of
    from finetune.models import Algorithm, PretrainedModel
    from finetune.services.data import create_model_repo
    from finetune.services.validation import validate_now
    from scheduler.models import DeviceType, Node, NodeSpec
    from tests import factories
    from trainer.samples import write_sample_dataset

    project = projects_of(user)[0]
    location = f"datasets/{project.pk}/api-bench.jsonl"
    write_sample_dataset("sft_messages", Path(settings.DATA_ROOT) / location, rows=16)
    dataset = factories.dataset(project, user, name="api-bench", location=location)
    validate_now(dataset.pk)
    repo = create_model_repo(
        user, project, name="api-bench", scenario=dataset.scenario, level=Access.NONE
    )
    spec = NodeSpec.objects.get(name="mlu-x1")
    Node.objects.create(
        name="bench-node",
        cpu_millis=64000,
        memory_mib=262144,
        device_type=DeviceType.MLU,
        device_count=8,
    )
    algorithm = Algorithm.objects.get(code="sft_lora")
    return project, {
        "project": project.pk,
        "scenario": algorithm.scenario_id,
        "algorithm": algorithm.pk,
        "pretrained_model": PretrainedModel.objects.get(name="bench").pk,
        "train_dataset": dataset.pk,
        "model_repo": repo.pk,
        "node_specs": [spec.pk],
        "duration_hours": 2,
    }


def measure_create(client, body: dict) -> None:
    """Two figures: with the worker's admission pass run between creates, as a worker
    that keeps up does on commit (the create's prediction is placed over the forecast
    that pass shared), and back to back, the request planning the state itself."""
    from scheduler import admission

    names = iter(range(10**6))

    def create() -> None:
        response = client.post(
            "/api/v1/jobs/", {**body, "name": f"api-{next(names)}"}, format="json"
        )
        assert response.status_code == 201, response.content

    create()
    warm = []
    for _ in range(CREATES):
        admission.admit()  # the worker, untimed
        warm += _timed(create, 1)
    print(f"api_create_p95_ms: {_p95(warm):.1f} ms")
    print(f"api_create_behind_worker_p95_ms: {_p95(_timed(create, CREATES // 4)):.1f} ms")


def measure_webhooks(project) -> None:
    """From a job's move (the transaction that makes it) to the receiver holding the
    signed POST: the event recorded on commit, the delivery task run at once in this
    process (eager, as a free worker would take it), signed and sent over loopback."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from django.conf import settings

    from config.celery import app
    from finetune.models import Job, JobStatus
    from finetune.states import transition
    from webhooks.models import Webhook

    arrived: dict[int, float] = {}

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            import json

            body = self.rfile.read(int(self.headers["Content-Length"]))
            arrived[json.loads(body)["data"]["job"]["id"]] = time.perf_counter()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.JINGTIAO_WEBHOOK_ALLOW_PRIVATE = True
    app.conf.task_always_eager = True
    logging.getLogger("celery.app.trace").setLevel(logging.WARNING)  # a line per delivery
    Webhook.objects.create(
        project=project,
        url=f"http://127.0.0.1:{server.server_port}/hook",
        events=["job.started"],
    )
    jobs = list(
        Job.objects.filter(project=project, status=JobStatus.QUEUED, name__startswith="api-")
    )
    timings = []
    try:
        for job in jobs:
            started = time.perf_counter()
            transition(job, JobStatus.RUNNING)
            deadline = started + 10
            while job.pk not in arrived and time.perf_counter() < deadline:
                time.sleep(0.0005)
            assert job.pk in arrived, "the receiver got nothing"
            timings.append((arrived[job.pk] - started) * 1000)
    finally:
        app.conf.task_always_eager = False
        server.shutdown()
    print(f"webhook_delivery_p50_ms: {statistics.median(timings):.1f} ms")
    print(f"webhook_delivery_p95_ms: {_p95(timings):.1f} ms")


def main() -> None:
    benchdb.admin(f"DROP DATABASE IF EXISTS {BENCH_DB}")
    benchdb.admin(f"CREATE DATABASE {BENCH_DB}")
    try:
        # the tasks a request queues (admission, validation) stay in this process: the
        # request is measured, not a worker, nor a broker that is not there
        os.environ["CELERY_BROKER_URL"] = "memory://"
        benchdb.setup_django(BENCH_DB)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        user = list_page._fill()
        print(f"fill_seconds: {time.perf_counter() - started:.0f} s", file=sys.stderr)
        client = _client(user)
        measure_list(client)
        project, body = _ready(user)
        measure_create(client, body)
        measure_webhooks(project)
    finally:
        from django.db import connections

        connections.close_all()
        benchdb.admin(f"DROP DATABASE IF EXISTS {BENCH_DB}")


if __name__ == "__main__":
    main()
