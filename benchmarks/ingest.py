"""How many reported points per second does the report endpoint store? (issue 7)

Creates its own PostgreSQL database (jingtiao_bench_ingest, dropped at the end)
with 1,000 running jobs, each with its report token, serves the platform with
gunicorn on 127.0.0.1, and has 1,000 simulated workers (one per job, driven by a
pool of client threads) post batches as the trainer does: 50 metric points and 10
resource samples each, sequence numbers rising. Prints, each on its own line:

    ingest_points_per_s   points (metrics + samples) stored per second
    ingest_batches_per_s
    ingest_p95_ms         latency of one batch
    ingest_errors         answers other than 200

    .venv/bin/python benchmarks/ingest.py
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import benchdb  # noqa: E402

BENCH_DB = "jingtiao_bench_ingest"
JOBS = 1000
METRICS, SAMPLES = 50, 10
CLIENTS = 16
SECONDS = 30
TOKEN = "bench-token"


def _fill() -> list[int]:
    from django.contrib.auth import get_user_model

    from accounts.models import Project
    from finetune.models import Job, JobStatus
    from scheduler.launching import hash_token
    from tests import factories

    user = get_user_model().objects.create_user("bench", password="bench-password")
    project = Project.objects.create(name="bench")
    template = factories.job(project, user, status=JobStatus.RUNNING)
    token_hash = hash_token(TOKEN)
    jobs = [
        Job(
            name=f"job-{n}",
            project=project,
            creator=user,
            scenario=template.scenario,
            algorithm=template.algorithm,
            pretrained_model=template.pretrained_model,
            train_dataset=template.train_dataset,
            model_repo=template.model_repo,
            duration=template.duration,
            status=JobStatus.RUNNING,
            report_token_hash=token_hash,
        )
        for n in range(JOBS)
    ]
    return [job.pk for job in Job.objects.bulk_create(jobs)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _batch(job_id: int, seq: int) -> bytes:
    now = time.time()
    steps = 1_000_000  # as the trainer reports: every point carries progress and ETA,
    # so each batch also moves the job's own progress (one UPDATE of its row)
    metrics = [
        {
            "step": (step := seq * METRICS + i),
            "loss": 2.0 - i * 0.001,
            "learning_rate": 1e-4,
            "progress": step / steps,
            "eta_seconds": float(steps - step),
            "time": now,
        }
        for i in range(METRICS)
    ]
    samples = [
        {"time": now, "cpu_percent": 150.0, "memory_bytes": 2**30, "net_rx_bytes": i}
        for i in range(SAMPLES)
    ]
    body = {"job_id": job_id, "worker": "rank0", "seq": seq, "metrics": metrics}
    body["resources"] = samples
    return json.dumps(body).encode()


def main() -> None:
    benchdb.admin(f"DROP DATABASE IF EXISTS {BENCH_DB}")
    benchdb.admin(f"CREATE DATABASE {BENCH_DB}")
    server = None
    try:
        benchdb.setup_django(BENCH_DB)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        job_ids = _fill()
        port = _free_port()
        env = {
            **os.environ,
            "JINGTIAO_REPORT_RATE_PER_MINUTE": "100000",
            "ALLOWED_HOSTS": "127.0.0.1",
        }
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        seqs = dict.fromkeys(job_ids, 0)
        lock = threading.Lock()
        latencies: list[float] = []
        errors = [0]
        stored = [0, 0]
        deadline = time.monotonic() + SECONDS

        def client(offset: int) -> None:
            turn = offset
            while time.monotonic() < deadline:
                job_id = job_ids[turn % JOBS]
                turn += CLIENTS
                with lock:
                    seqs[job_id] += 1
                    seq = seqs[job_id]
                request = urllib.request.Request(
                    f"{base}/api/jobs/{job_id}/report/",
                    _batch(job_id, seq),
                    headers={
                        "Authorization": f"Bearer {TOKEN}",
                        "Content-Type": "application/json",
                    },
                )
                started = time.perf_counter()
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        body = json.loads(answer.read())
                    with lock:
                        latencies.append((time.perf_counter() - started) * 1000)
                        stored[0] += body["metrics"] + body["resources"]
                        stored[1] += 1
                except OSError:
                    with lock:
                        errors[0] += 1

        started = time.monotonic()
        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started

        from finetune.models import MetricPoint, ResourceSample

        in_database = MetricPoint.objects.count() + ResourceSample.objects.count()
        print(f"ingest_points_per_s: {in_database / elapsed:.0f} points/s")
        print(f"ingest_batches_per_s: {stored[1] / elapsed:.1f} batches/s")
        print(f"ingest_p95_ms: {statistics.quantiles(latencies, n=20)[-1]:.1f} ms")
        print(f"ingest_errors: {errors[0]} errors")
        print(f"ingest_jobs_reporting: {len({j for j, s in seqs.items() if s})} jobs")
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        from django.db import connections

        connections.close_all()
        benchdb.admin(f"DROP DATABASE IF EXISTS {BENCH_DB}")


if __name__ == "__main__":
    main()
