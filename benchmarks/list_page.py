"""How fast is the job list page with 100,000 jobs? (issue 6, "Benchmark")

Creates its own PostgreSQL database (jingtiao_bench, dropped at the end), fills it
with 100,000 jobs across 200 projects and 1,000 users, grants included (bulk
inserts into the direct-foreign-key permission tables), then requests the list
page as a member of five projects: the first page, a name search and a status
filter. Prints p50/p95 in milliseconds and the SQL query count, each on its own
line. Runs with no arguments:

    .venv/bin/python benchmarks/list_page.py

BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) names the
server to create the database on.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import benchdb  # noqa: E402

PROJECTS, USERS, JOBS = 200, 1000, 100_000
PROJECTS_PER_USER = 5
REPEATS = 40
BENCH_DB = "jingtiao_bench"


def _fill() -> object:
    """Bulk-insert the data set; returns the member of five projects whose page is timed."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    from accounts.models import Access, Membership, Project
    from finetune.access import LEVEL_ACTIONS, codename
    from finetune.catalog_sync import sync_catalog
    from finetune.models import (
        Algorithm,
        Dataset,
        Job,
        JobNodeSpec,
        JobStatus,
        JobUserObjectPermission,
        ModelRepo,
        PretrainedModel,
    )
    from scheduler.models import DeviceType, NodeSpec

    rng = random.Random(6)
    sync_catalog()
    algorithm = Algorithm.objects.get(code="sft_lora")
    scenario = algorithm.scenario
    base = PretrainedModel.objects.create(name="bench", task_type="llm", family="x", location="m")
    specs = [
        NodeSpec.objects.create(
            name=f"mlu-x{n}",
            cpu_millis=8000 * n,
            memory_mib=32768 * n,
            device_type=DeviceType.MLU,
            device_count=n,
        )
        for n in (1, 2, 4, 8)
    ]
    projects = Project.objects.bulk_create(Project(name=f"p{i}") for i in range(PROJECTS))
    User = get_user_model()
    users = User.objects.bulk_create(User(username=f"user{i}") for i in range(USERS))
    members: dict[int, list] = {p.pk: [] for p in projects}
    memberships = []
    for index, user in enumerate(users):
        for k in range(PROJECTS_PER_USER):
            project = projects[(index + k * 41) % PROJECTS]
            members[project.pk].append(user)
            memberships.append(Membership(project=project, user=user))
    Membership.objects.bulk_create(memberships)
    datasets = Dataset.objects.bulk_create(
        Dataset(
            project=p,
            creator=members[p.pk][0],
            name="data",
            scenario=scenario,
            format="sft_messages",
            location="d",
            access=Access.READ_WRITE,
        )
        for p in projects
    )
    repos = ModelRepo.objects.bulk_create(
        ModelRepo(
            project=p,
            creator=members[p.pk][0],
            name="repo",
            scenario=scenario,
            location="r",
            access=Access.READ_WRITE,
        )
        for p in projects
    )
    permission = {
        action: Permission.objects.get(
            codename=codename(Job, action), content_type__app_label="finetune"
        )
        for action in LEVEL_ACTIONS[Job][Access.READ_WRITE]
    }
    levels = [Access.READ_WRITE, Access.READ_ONLY, Access.NONE]
    statuses = [s for s, _label in JobStatus.choices]
    per_project = JOBS // PROJECTS
    batch = 5000
    for start in range(0, JOBS, batch):
        jobs = []
        for n in range(start, start + batch):
            index = n // per_project
            project = projects[index]
            jobs.append(
                Job(
                    name=f"job-{n}",
                    project=project,
                    creator=rng.choice(members[project.pk]),
                    access=rng.choice(levels),
                    priority=rng.choice((10, 20, 30, 40)),
                    scenario=scenario,
                    algorithm=algorithm,
                    pretrained_model=base,
                    train_dataset=datasets[index],
                    model_repo=repos[index],
                    duration=timedelta(hours=rng.choice((1, 2, 24))),
                    node_count=rng.choice((1, 1, 2, 4)),
                    **_status_fields(rng.choice(statuses), rng),
                )
            )
        jobs = Job.objects.bulk_create(jobs, batch_size=batch)
        JobNodeSpec.objects.bulk_create(
            [JobNodeSpec(job=job, spec=rng.choice(specs), rank=0) for job in jobs],
            batch_size=batch,
        )
        user_grants = []  # the creators'; the others' access is the job's level
        for job in jobs:
            for action in LEVEL_ACTIONS[Job][Access.READ_WRITE]:
                user_grants.append(
                    JobUserObjectPermission(
                        content_object=job, user=job.creator, permission=permission[action]
                    )
                )
        JobUserObjectPermission.objects.bulk_create(user_grants, batch_size=batch)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return users[0]


def _status_fields(status: str, rng) -> dict:
    """A running job as the list sees it: started, with a reported progress and ETA."""
    from django.utils import timezone

    from finetune.models import JobStatus

    fields = {"status": status}
    if status == JobStatus.RUNNING:
        now = timezone.now()
        fields.update(
            started_at=now - timedelta(minutes=rng.randint(1, 600)),
            progress=rng.random(),
            eta_at=now + timedelta(minutes=rng.randint(1, 600)),
        )
    return fields


def _measure(user) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    client = Client()
    client.force_login(user)
    url = reverse("finetune:job_list")
    cases = {
        "first_page": {},
        "name_search": {"q": "job-12"},
        "status_filter": {"status": "running"},
    }
    timings: list[float] = []
    queries: dict[str, int] = {}
    lines = []
    for label, params in cases.items():
        for _warm in range(3):
            assert client.get(url, params).status_code == 200
        case: list[float] = []
        for _repeat in range(REPEATS):
            started = time.perf_counter()
            response = client.get(url, params)
            case.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        with CaptureQueriesContext(connection) as captured:
            client.get(url, params)
        queries[label] = len(captured.captured_queries)
        with CaptureQueriesContext(connection) as captured:
            client.get(url, {**params, "per_page": 100})
        queries[f"{label}_per_page_100"] = len(captured.captured_queries)
        timings += case
        lines.append(f"{label}_p50_ms: {statistics.median(case):.1f} ms")
        lines.append(f"{label}_p95_ms: {_p95(case):.1f} ms")
        lines.append(f"{label}_queries: {queries[label]} queries")
    print(f"list_p50_ms: {statistics.median(timings):.1f} ms")
    print(f"list_p95_ms: {_p95(timings):.1f} ms")
    print(f"list_queries: {max(v for k, v in queries.items() if 'per_page' not in k)} queries")
    print(f"list_queries_per_page_100: {max(queries.values())} queries")
    for line in lines:
        print(line)


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> None:
    benchdb.admin(f"DROP DATABASE IF EXISTS {BENCH_DB}")
    benchdb.admin(f"CREATE DATABASE {BENCH_DB}")
    try:
        benchdb.setup_django(BENCH_DB)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        started = time.perf_counter()
        user = _fill()
        print(f"fill_seconds: {time.perf_counter() - started:.0f} s", file=sys.stderr)
        _measure(user)
    finally:
        from django.db import connections

        connections.close_all()
        benchdb.admin(f"DROP DATABASE IF EXISTS {BENCH_DB}")


if __name__ == "__main__":
    main()
