"""How fast is queue prediction (F1.17) for a draft job? (issue 5, "Benchmarks")

Fills its own PostgreSQL database (jingtiao_bench_prediction, dropped at the end)
with the state of benchmarks/planner.py: 1,000 nodes in shared and dedicated
pools, 2,000 running jobs, 10,000 queued jobs (gangs up to 8 nodes, one in five
constrained). Then posts drafts to the prediction endpoint the create page
uses (/jobs/prediction/, through Django's whole request stack) as a project
member, and prints, each on its own line:

    prediction_cold_ms   the first draft, which plans the state once (a Forecast)
    prediction_p50_ms    drafts on the same state
    prediction_p95_ms
    prediction_state_change_ms  p95 of a draft right after each of ten changes of state
                         (a priority, a new job, a job ended), once the worker's
                         admission pass that the change sets off has run: the pass
                         plans the new state and shares its forecast (goal 150 ms)
    prediction_state_change_unshared_ms  the same draft where no worker has run yet:
                         the web process plans by itself
    forecast_warm_seconds  p95 of the worker's pass: how long after a change a draft
                         still waits for a plan of its own

    .venv/bin/python benchmarks/prediction.py

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

BENCH_DB = "jingtiao_bench_prediction"
DRAFTS = 200
SEED = 7


def _fill(rng: random.Random):
    """Insert the planner benchmark's state; returns a member of project 1 and the specs."""
    import planner as planner_bench
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from accounts.models import Membership, Project
    from finetune.models import (
        Algorithm,
        Dataset,
        Job,
        JobNodeSpec,
        JobStatus,
        ModelRepo,
        PretrainedModel,
        Scenario,
    )
    from scheduler.models import MIB, Node, NodeSpec, ResourcePool

    nodes, pools = planner_bench.build_cluster(rng)
    running = planner_bench.build_running(rng, nodes, 2000)
    queue = planner_bench.build_queue(rng, nodes, 10_000)
    shift = timezone.now() - planner_bench.NOW  # the generated state, moved to now

    user = get_user_model().objects.create_user("member", password="bench-password")
    projects = {}
    for number in range(1, 7):
        project = Project.objects.create(name=f"project-{number}")
        projects[number] = project
        Membership.objects.create(project=project, user=user)
    pool_rows = {}
    for pool in pools:
        row = ResourcePool.objects.create(
            name=pool.name, dedicated=pool.dedicated_project_ids is not None
        )
        row.projects.set([projects[i] for i in pool.dedicated_project_ids or ()])
        pool_rows[pool.name] = row
    Node.objects.bulk_create(
        Node(
            name=node.name,
            pool=pool_rows.get(node.pool),
            driver_version=node.driver_version or "",
            cpu_millis=node.cpu_millis,
            memory_mib=node.memory_bytes // MIB,
            device_type=node.device_type,
            device_count=node.devices,
            schedulable=node.schedulable,
        )
        for node in nodes
    )
    all_specs = {spec.spec_id: spec for specs in planner_bench.SPECS.values() for spec in specs} | {
        planner_bench.TOO_BIG.spec_id: planner_bench.TOO_BIG
    }
    spec_rows = {
        spec_id: NodeSpec.objects.create(
            pk=spec_id,
            name=f"spec-{spec_id}",
            cpu_millis=spec.cpu_millis,
            memory_mib=spec.memory_bytes // MIB,
            device_type=spec.device_type,
            device_count=spec.devices,
        )
        for spec_id, spec in all_specs.items()
    }

    scenario = Scenario.objects.get(code="llm/sft")
    algorithm = Algorithm.objects.create(code="sft_lora", scenario=scenario, name="LoRA SFT")
    base = PretrainedModel.objects.create(
        name="base", task_type="llm", family="llama", location="m"
    )
    refs = {}
    for number, project in projects.items():
        refs[number] = (
            Dataset.objects.create(
                project=project,
                creator=user,
                name="data",
                scenario=scenario,
                format="sft_messages",
                location="d",
            ),
            ModelRepo.objects.create(
                project=project, creator=user, name="repo", scenario=scenario, location="r"
            ),
        )

    def job(number: int, **fields) -> Job:
        dataset, repo = refs[number]
        return Job(
            name=f"job-{fields.get('pk')}",
            project=projects[number],
            creator=user,
            scenario=scenario,
            algorithm=algorithm,
            pretrained_model=base,
            train_dataset=dataset,
            model_repo=repo,
            **fields,
        )

    jobs = []
    for item in running:
        duration = timedelta(hours=72)
        jobs.append(
            job(
                1 + item.job_id % 6,
                pk=item.job_id,
                status=JobStatus.RUNNING,
                spec_in_use=spec_rows[item.spec.spec_id],
                placement=[
                    {"rank": rank, "node": name, "devices": list(range(item.spec.devices))}
                    for rank, name in enumerate(item.nodes)
                ],
                started_at=item.deadline + shift - duration,
                queued_at=item.deadline + shift - duration,
                duration=duration,
            )
        )
    for item in queue:
        jobs.append(
            job(
                item.project_id,
                pk=item.job_id,
                status=JobStatus.QUEUED,
                # the generator's levels onto the platform's (low .. urgent), so
                # drafts land anywhere in the queue, not always at its head
                priority={0: 10, 1: 20, 2: 30, 5: 40}[item.priority],
                queued_at=item.queued_at + shift,
                node_count=item.node_count,
                node_names=list(item.node_names),
                pool=pool_rows.get(item.pool),
                driver_version=item.driver_version or "",
                duration=item.duration,
            )
        )
    Job.objects.bulk_create(jobs, batch_size=2000)
    JobNodeSpec.objects.bulk_create(
        (
            JobNodeSpec(job_id=item.job_id, spec=spec_rows[spec.spec_id], rank=rank)
            for item in queue
            for rank, spec in enumerate(item.specs)
        ),
        batch_size=5000,
    )
    return user, [spec_rows[spec_id] for spec_id in sorted(all_specs) if spec_id != 10]


def _change(rng: random.Random, number: int) -> None:
    """One change of state, as the pages make it: a queued job's priority, a new job, or
    a running job that ended -- each with its event, as the state machine writes one."""
    from django.db.models import Max
    from django.utils import timezone

    from finetune.models import Job, JobEvent, JobNodeSpec, JobStatus

    kind = number % 3
    if kind == 0:
        job = rng.choice(
            list(Job.objects.filter(status=JobStatus.QUEUED).values_list("pk", flat=True)[:500])
        )
        Job.objects.filter(pk=job).update(priority=rng.choice([10, 20, 30, 40]))
        JobEvent.objects.create(job_id=job, kind=JobEvent.Kind.PRIORITY, message="bench")
    elif kind == 1:
        model = Job.objects.filter(status=JobStatus.QUEUED).order_by("pk").first()
        specs = list(JobNodeSpec.objects.filter(job=model).values_list("spec_id", flat=True))
        # the fill gave every job its id, so the sequence is behind: the next id by hand
        model.pk = Job.objects.aggregate(last=Max("pk"))["last"] + 1
        model.name = "bench-new"
        model.queued_at = timezone.now()
        model.save()
        JobNodeSpec.objects.bulk_create(
            JobNodeSpec(job=model, spec_id=spec, rank=rank) for rank, spec in enumerate(specs)
        )
        JobEvent.objects.create(job=model, kind=JobEvent.Kind.CREATED, message="bench")
    else:
        job = Job.objects.filter(status=JobStatus.RUNNING).order_by("?").first()
        Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, finished_at=timezone.now())
        JobEvent.objects.create(job=job, kind=JobEvent.Kind.STATUS, message="bench")


def _draft(rng: random.Random, specs) -> dict:
    spec = rng.choice(specs)
    count = 1 if spec.device_count < 8 else rng.choice([1, 2, 4])
    return {
        "node_specs": [spec.pk],
        "node_count": str(count),
        "priority": str(rng.choice([10, 20, 30, 40])),
        "duration_preset": str(rng.choice([1, 2, 4, 8, 24])),
    }


def _post(client, data: dict) -> float:
    started = time.perf_counter()
    response = client.post("/jobs/prediction/", data)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise SystemExit(f"prediction answered {response.status_code}")
    return elapsed


def main() -> None:
    benchdb.admin(f"DROP DATABASE IF EXISTS {BENCH_DB}")
    benchdb.admin(f"CREATE DATABASE {BENCH_DB}")
    try:
        benchdb.setup_django(BENCH_DB)
        from django.core.management import call_command
        from django.test import Client

        call_command("migrate", verbosity=0)
        rng = random.Random(SEED)
        started = time.perf_counter()
        user, specs = _fill(rng)
        print(f"# filled in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        client = Client()
        client.force_login(user)
        cold = _post(client, _draft(rng, specs))
        timings = [_post(client, _draft(rng, specs)) for _ in range(DRAFTS)]
        # changes of state, each followed by what the worker does on it
        from scheduler import admission

        _change(rng, 0)
        unshared = _post(client, _draft(rng, specs))
        changed, warm = [], []
        for number in range(10):
            _change(rng, number)
            started = time.perf_counter()
            for _pass in range(3):  # a pass that starts jobs sets off another
                if not admission.admit():
                    break
            warm.append(time.perf_counter() - started)
            changed.append(_post(client, _draft(rng, specs)))
        print(f"prediction_cold_ms: {cold:.1f} ms")
        print(f"prediction_p50_ms: {statistics.median(timings):.1f} ms")
        print(f"prediction_p95_ms: {statistics.quantiles(timings, n=20)[-1]:.1f} ms")
        print(f"prediction_state_change_ms: {statistics.quantiles(changed, n=20)[-1]:.1f} ms")
        print(f"prediction_state_change_unshared_ms: {unshared:.1f} ms")
        print(f"forecast_warm_seconds: {statistics.quantiles(warm, n=20)[-1]:.2f} s")
        print(f"prediction_drafts: {DRAFTS} drafts")
        print("# after each change: " + " ".join(f"{ms:.0f}" for ms in changed), file=sys.stderr)
    finally:
        from django.db import connections

        connections.close_all()
        benchdb.admin(f"DROP DATABASE IF EXISTS {BENCH_DB}")


if __name__ == "__main__":
    main()
