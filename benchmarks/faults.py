"""The fault matrix: the platform's processes killed and restarted one at a time
while tiny jobs train for real, with the invariants checked the whole time.

    python benchmarks/faults.py [--platform both|production|embedded] [--only NAME ...]

Runs the matrix twice (each in a process of its own), on:
- **production**: its own PostgreSQL database (on BENCH_DATABASE_URL's server,
  dropped at the end), its own Redis on a free port (nothing kept on disk), and
  the web server, the Celery workers (the jingtiao, the data, and the inference and
  export queues) and beat as separate processes; one that dies is started again a
  second later, as systemd or Kubernetes would;
- **embedded**: the embedded defaults as bin/demo runs them (SQLite, the
  embedded Redis, `manage.py run_embedded` starting again whatever dies).
Both use the local executor, with observe and admission every 5 s
(JINGTIAO_OBSERVE_INTERVAL_SECONDS, JINGTIAO_ADMISSION_INTERVAL_SECONDS).

Each fault is injected on a fresh tiny job (LoRA SFT of the demo's tiny Llama, 3
steps, created through the create page as alice): the worker killed before the
spawn, after it, after the records, and while training (failpoints,
config/failpoints.py, place the first three exactly); the supervisor killed;
the trainer killed; beat restarted; the broker killed while a job is created and
another stopped; the web server down (embedded: hung) while training; the whole
platform restarted while training; a stop during the launch; the worker of a
merge killed, its trainer process with it (the failpoint modelwork.after_spawn),
which must end in one merged version. A fault is
survived when its jobs end as they should, each with a reason, and, while it
ran: no two trainers of one job and rank at once, no job RUNNING without a
process for longer than the observe period + 10 s, no trainer alive more than
15 s after its job stopped running, no 5xx for an action the user took. Prints
each figure on its own line, over both platforms (the per-platform figures as
comments):

    faults_run, faults_survived, duplicate_trainers, running_without_process_max,
    orphan_seconds_max, lost_jobs, server_errors

The soak on the embedded defaults is benchmarks/soak.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdb
from platform_run import (
    PYTHON,
    Browser,
    Service,
    Watch,
    free_port,
    manage,
    supervisor_pid,
    wait_until,
)

OBSERVE_SECONDS = 5
RUNNING_WITHOUT_PROCESS_LIMIT = OBSERVE_SECONDS + 10
ORPHAN_LIMIT = 15
JOB_TIMEOUT = 240
MERGE_TIMEOUT = 240  # the silence (30 s here), the sweep (every 60 s) and the merge
TERMINAL = {"succeeded", "failed", "stopped", "expired"}


@dataclass
class Expect:
    job_id: int
    statuses: set[str]  # what it must end as
    requeued: bool = False  # it must have gone back to the queue on the way
    also: Callable[[], list[str]] | None = None  # more to check once it ended: problems


SETTINGS = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "JINGTIAO_FAILPOINTS": "true",
    "JINGTIAO_OBSERVE_INTERVAL_SECONDS": str(OBSERVE_SECONDS),
    "JINGTIAO_ADMISSION_INTERVAL_SECONDS": "5",
    "JINGTIAO_STOP_GRACE_SECONDS": "10",
    # a merge whose worker died is taken up again after this silence (120 s by default)
    "JINGTIAO_MODEL_WORK_SILENT_SECONDS": "30",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


class Platform:
    """What the faults do to the platform's processes; two ways of running it below."""

    name = ""

    def __init__(self, prefix: str) -> None:
        self.data_root = Path(f"/tmp/{prefix}-{os.getpid()}")  # short: a socket may be in it
        shutil.rmtree(self.data_root, ignore_errors=True)
        (self.data_root / "logs").mkdir(parents=True)
        self.web_port = free_port()
        self.base = f"http://127.0.0.1:{self.web_port}"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}
        }
        self.env.update(
            SETTINGS, JINGTIAO_DATA_ROOT=str(self.data_root), JINGTIAO_REPORT_URL=self.base
        )
        self.restarts = 0

    def prepare(self) -> None:
        manage(self.env, "migrate", "--no-input", "-v0")
        manage(self.env, "collectstatic", "--no-input", "-v0")
        manage(self.env, "seed_demo")

    def ready(self) -> None:
        if not wait_until(lambda: _ok(f"{self.base}/healthz"), 120, step=0.5):
            raise RuntimeError(f"the platform did not become ready; see {self.data_root}/logs")

    def arm(self, point: str, action: str) -> None:
        folder = self.data_root / "failpoints"
        folder.mkdir(exist_ok=True)
        (folder / point).write_text(action)


class Production(Platform):
    """PostgreSQL, a Redis, and web, worker and beat as separate processes; one that dies
    is started again a second later, as systemd or Kubernetes would."""

    name = "production"

    def __init__(self, database: str) -> None:
        super().__init__("jt-faults")
        self.redis_port = free_port()
        server = benchdb.server_url().rsplit("/", 1)[0]
        self.env.update(
            DATABASE_URL=f"{server}/{database}", REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0"
        )
        from config.embedded import redis_server

        logs = self.data_root / "logs"
        self.redis = Service(
            "redis",
            [redis_server(), "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            self.env, logs / "redis.log",
        )  # fmt: skip
        self.web = Service(
            "web",
            [PYTHON, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{self.web_port}",
             "--workers", "2", "--threads", "4", "--timeout", "60"],
            self.env, logs / "web.log",
        )  # fmt: skip

        def worker(name: str, hostname: str, queues: str, concurrency: int) -> Service:
            return Service(
                name,
                [PYTHON, "-m", "celery", "-A", "config", "worker", "--hostname", hostname,
                 "--concurrency", str(concurrency), "--queues", queues, "--loglevel", "INFO"],
                self.env, logs / f"{name}.log",
            )  # fmt: skip

        self.worker = worker("worker", "celery@%h", "jingtiao", 2)
        self.data_worker = worker("data-worker", "data@%h", "data", 1)
        self.model_worker = worker("model-worker", "model@%h", "inference,export", 1)
        self.beat = Service(
            "beat",
            [PYTHON, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
             "--schedule", str(self.data_root / "celerybeat-schedule")],
            self.env, logs / "beat.log",
        )  # fmt: skip
        self.kept = {self.web, self.worker, self.data_worker, self.model_worker, self.beat}
        self._stop = threading.Event()
        self._keeper = threading.Thread(target=self._keep, daemon=True)

    def _keep(self) -> None:
        while not self._stop.wait(1.0):
            for service in list(self.kept):
                if service.process is not None and not service.alive():
                    service.kill()  # its group's leftovers
                    service.start()
                    self.restarts += 1

    def start(self) -> None:
        self.redis.start()
        wait_until(lambda: _answers(self.redis_port), 15)
        self.prepare()
        for service in (self.worker, self.data_worker, self.model_worker, self.beat, self.web):
            service.start()
        self.ready()
        self._keeper.start()

    def stop(self) -> None:
        self._stop.set()
        if self._keeper.is_alive():
            self._keeper.join()
        services = (self.web, self.beat, self.model_worker, self.data_worker, self.worker)
        for service in (*services, self.redis):
            service.kill(signal.SIGTERM, wait=20)

    def _down(self, services: list[Service], seconds: float) -> None:
        for service in services:
            self.kept.discard(service)
            service.kill(signal.SIGTERM)
        time.sleep(seconds)
        for service in reversed(services):
            service.start()
            self.kept.add(service)

    def kill_worker(self) -> None:
        self.worker.kill(signal.SIGKILL)

    def beat_down(self) -> None:
        self._down([self.beat], 5)

    def broker_down(self, meanwhile: Callable[[], None]) -> None:
        """Redis killed, its queue lost (it keeps nothing on disk); back after 5 s."""
        self.redis.kill(signal.SIGKILL)
        meanwhile()
        time.sleep(5)
        self.redis.start()

    def web_down(self) -> None:
        self._down([self.web], 10)

    def restart(self) -> None:
        self._down([self.web, self.beat, self.model_worker, self.data_worker, self.worker], 5)


class Embedded(Platform):
    """The embedded defaults, as bin/demo runs them: SQLite, the embedded Redis, and
    `manage.py run_embedded` starting again whatever dies."""

    name = "embedded"

    def __init__(self) -> None:
        super().__init__("jt-fe")
        self.run = Service(
            "run_embedded",
            [PYTHON, "manage.py", "run_embedded", "--port", str(self.web_port)],
            self.env,
            self.data_root / "logs" / "run_embedded.log",
        )

    def _state(self) -> dict:
        return json.loads((self.data_root / "logs" / "embedded.json").read_text())

    def pid(self, name: str) -> int:
        return self._state()[name]["pid"]

    def start(self) -> None:
        self.prepare()
        self.run.start()
        self.ready()

    def _stop_run(self) -> None:
        """Its restarts counted first: the state file goes with it."""
        with contextlib.suppress(OSError, ValueError):
            self.restarts += sum(child["restarts"] for child in self._state().values())
        self.run.kill(signal.SIGTERM, wait=60)

    def stop(self) -> None:
        self._stop_run()

    def kill_worker(self) -> None:
        os.kill(self.pid("worker"), signal.SIGKILL)

    def beat_down(self) -> None:
        os.kill(self.pid("beat"), signal.SIGTERM)  # started again by run_embedded

    def broker_down(self, meanwhile: Callable[[], None]) -> None:
        """The broker crashes; run_embedded starts it again a second later, its queue
        kept (append-only file)."""
        os.kill(self.pid("broker"), signal.SIGKILL)
        meanwhile()

    def web_down(self) -> None:
        """The web server hangs for 10 s (stopped, not dead: reports time out)."""
        group = self.pid("web")
        os.killpg(group, signal.SIGSTOP)
        time.sleep(10)
        os.killpg(group, signal.SIGCONT)

    def restart(self) -> None:
        self._stop_run()
        time.sleep(5)
        self.run.start()


def _answers(port: int) -> bool:
    import redis

    try:
        return redis.Redis(port=port, socket_timeout=1).ping()
    except redis.RedisError:
        return False


def _ok(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


class Matrix:
    def __init__(self, platform: Platform) -> None:
        from finetune.models import Job

        self.platform = platform
        self.Job = Job
        self.browser = Browser(platform.base, "alice", "jingtiao-alice")
        self.watch = Watch(platform.data_root, self.statuses).start()
        self.draft = self._draft()
        self.count = 0

    def statuses(self) -> dict[int, str]:
        return dict(self.Job.objects.values_list("pk", "status"))

    def _draft(self) -> dict:
        from finetune.models import Dataset, ModelRepo
        from scheduler.models import NodeSpec
        from tests.finetune.pages_support import job_post

        draft = job_post(
            Dataset.objects.get(name="sft-chat-train"),
            ModelRepo.objects.get(name="sft-models"),
            NodeSpec.objects.get(name="cpu-1c2g"),
        )
        draft.update({"param-max_steps": "3", "param-max_length": "64"})
        return draft

    # --- what a user does ----------------------------------------------------------------
    def create(self) -> int:
        self.count += 1
        name = f"fault-{self.count}"
        response = self.browser.post("/jobs/new/", {**self.draft, "name": name})
        if response.status_code != 302:
            raise RuntimeError(f"create answered {response.status_code}")
        return self.Job.objects.get(name=name).pk

    def stop_job(self, job_id: int) -> int:
        return self.browser.post(f"/jobs/{job_id}/stop/", {}).status_code

    def status(self, job_id: int) -> str:
        return self.Job.objects.filter(pk=job_id).values_list("status", flat=True).first()

    def training(self, job_id: int, seconds: float = 120) -> bool:
        """Until its trainer runs (and has had a moment to start training)."""
        found = wait_until(lambda: self.watch.trainer_pids(job_id), seconds)
        time.sleep(2)
        return bool(found)

    # --- the faults ----------------------------------------------------------------------
    def worker_killed_at(self, point: str, *, requeued: bool) -> Callable[[], list[Expect]]:
        def fault() -> list[Expect]:
            self.platform.arm(point, "kill")
            job = self.create()
            return [Expect(job, {"succeeded"}, requeued=requeued)]

        return fault

    def while_training(self, act: Callable[[int], object], ends: str) -> Callable:
        """A fault done to a job's training once it runs; the job must end `ends`."""

        def fault() -> list[Expect]:
            job = self.create()
            self.training(job)
            act(job)
            return [Expect(job, {ends})]

        return fault

    def kill_supervisor(self, job: int) -> None:
        os.kill(supervisor_pid(self.platform.data_root, job), signal.SIGKILL)

    def kill_trainer(self, job: int) -> None:
        for pid in self.watch.trainer_pids(job):
            os.kill(pid, signal.SIGKILL)

    def broker_restarted(self) -> list[Expect]:
        """While the broker is down, a job is created and a running one stopped: both
        answer at once, and both are carried out."""
        running = self.create()
        self.training(running)
        created = []

        def meanwhile() -> None:
            created.append(self.create())
            if self.stop_job(running) != 302:
                raise RuntimeError("stop answered an error with the broker down")

        self.platform.broker_down(meanwhile)
        return [Expect(running, {"stopped"}), Expect(created[0], {"succeeded"})]

    def stop_during_launch(self) -> list[Expect]:
        self.platform.arm("launch.after_spawn", "sleep 4")
        job = self.create()
        wait_until(lambda: self.status(job) == "running", 60)
        if self.stop_job(job) != 302:
            raise RuntimeError("stop answered an error during the launch")
        return [Expect(job, {"stopped"})]

    def merge_worker_killed(self) -> list[Expect]:
        """A trained job's version is merged (合并并导出); the merge's worker dies, its
        trainer process with it, once the merge runs. Another worker takes it up after
        its silence: one new version, no half-written folder left."""
        job = self.create()
        wait_until(lambda: self.status(job) in TERMINAL, JOB_TIMEOUT, 1.0)
        if self.status(job) != "succeeded":
            return [Expect(job, {"succeeded"})]  # judged as such; nothing to merge
        version = self.Job.objects.get(pk=job).output_version
        self.platform.arm("modelwork.after_spawn", "kill")
        path = f"/repos/{version.repo_id}/versions/{version.number}/export/"
        if self.browser.post(path, {}).status_code != 302:
            raise RuntimeError("the merge was not asked for")
        return [Expect(job, {"succeeded"}, also=lambda: self.merged_once(version))]

    def merged_once(self, version) -> list[str]:
        from finetune.models import ModelExport, ModelVersion
        from finetune.services.exports import output_location
        from finetune.storage import resolve
        from trainer.output import staging_of

        def ended() -> bool:
            found = ModelExport.objects.filter(source=version).first()
            return found is not None and found.status in ("succeeded", "failed")

        wait_until(ended, MERGE_TIMEOUT, 1.0)
        export = ModelExport.objects.filter(source=version).first()
        if export is None:
            return ["no merge was recorded"]
        problems = []
        if export.status != "succeeded":
            problems.append(f"merge {export.pk} ended {export.status}: {export.error[:200]}")
        if export.attempts < 2:
            problems.append(f"merge {export.pk} was not taken up again ({export.attempts})")
        merged = ModelVersion.objects.filter(derived_from=version).count()
        if merged != 1:
            problems.append(f"{merged} merged versions of v{version.number}")
        if staging_of(resolve(output_location(export))).exists():
            problems.append(f"merge {export.pk} left its half-written folder")
        return problems

    def faults(self) -> dict[str, Callable[[], list[Expect]]]:
        return {
            "worker_killed_before_spawn": self.worker_killed_at(
                "launch.before_spawn", requeued=True
            ),
            "worker_killed_after_spawn": self.worker_killed_at(
                "launch.after_spawn", requeued=False
            ),
            "worker_killed_after_record": self.worker_killed_at(
                "launch.after_record", requeued=False
            ),
            "worker_killed_while_training": self.while_training(
                lambda _job: self.platform.kill_worker(), ends="succeeded"
            ),
            "supervisor_killed": self.while_training(self.kill_supervisor, ends="failed"),
            "trainer_killed": self.while_training(self.kill_trainer, ends="failed"),
            "beat_restarted": self.while_training(
                lambda _job: self.platform.beat_down(), ends="succeeded"
            ),
            "broker_restarted": self.broker_restarted,
            "web_down_while_training": self.while_training(
                lambda _job: self.platform.web_down(), ends="succeeded"
            ),
            "platform_restarted_while_training": self.while_training(
                lambda _job: self.platform.restart(), ends="succeeded"
            ),
            "stop_during_launch": self.stop_during_launch,
            "merge_worker_killed": self.merge_worker_killed,
        }

    # --- judging -------------------------------------------------------------------------
    def judge(self, expected: list[Expect]) -> list[str]:
        from finetune.models import JobEvent

        ids = [item.job_id for item in expected]
        wait_until(lambda: all(self.status(job) in TERMINAL for job in ids), JOB_TIMEOUT, 1.0)
        # A trainer of an ended job has ORPHAN_LIMIT to go (the watch times it exactly).
        wait_until(lambda: not any(self.watch.trainer_pids(job) for job in ids), ORPHAN_LIMIT)
        problems = []
        for item in expected:
            job = self.Job.objects.filter(pk=item.job_id).first()
            if job is None or job.status not in TERMINAL:
                problems.append(f"job {item.job_id} lost: {job.status if job else 'gone'}")
                continue
            if job.status not in item.statuses:
                problems.append(f"job {job.pk} ended {job.status}: {job.status_reason[:200]}")
            if not job.status_reason.strip():
                problems.append(f"job {job.pk} ended {job.status} without a reason")
            requeued = JobEvent.objects.filter(job=job, to_status="queued").count() > 1
            if item.requeued and not requeued:
                problems.append(f"job {job.pk} was not requeued")
            if self.watch.trainer_pids(job.pk):
                problems.append(f"job {job.pk} ended, and its trainer still runs")
            if item.also is not None:
                problems += item.also()
            if any(key[0] == job.pk for key in self.watch.duplicates):
                problems.append(f"job {job.pk} had two trainers at once")
            waited = self.watch.running_without_process.get(job.pk, 0.0)
            if waited > RUNNING_WITHOUT_PROCESS_LIMIT:
                problems.append(f"job {job.pk} was RUNNING without a process for {waited:.0f} s")
            orphan = self.watch.orphans.get(job.pk, 0.0)
            if orphan > ORPHAN_LIMIT:
                problems.append(f"job {job.pk}'s trainer outlived it by {orphan:.0f} s")
        return problems


FIGURES = {  # name -> how the two platforms' figures combine
    "faults_run": sum,
    "faults_survived": sum,
    "duplicate_trainers": sum,
    "running_without_process_max": max,
    "orphan_seconds_max": max,
    "lost_jobs": sum,
    "server_errors": sum,
}
UNITS = {"running_without_process_max": " s", "orphan_seconds_max": " s"}


def run_matrix(platform: Platform, only: list[str] | None) -> dict[str, float]:
    import django

    os.environ.clear()
    os.environ.update(platform.env)
    django.setup()
    results: dict[str, list[str]] = {}
    platform.start()
    matrix = Matrix(platform)
    for name, fault in matrix.faults().items():
        if only and name not in only:
            continue
        started = time.monotonic()
        try:
            problems = matrix.judge(fault())
        except Exception as exc:  # the fault could not even be carried out
            problems = [f"{type(exc).__name__}: {exc}"]
        results[name] = problems
        verdict = "survived" if not problems else "NOT survived: " + "; ".join(problems)
        print(
            f"# {platform.name} {name}: {verdict} ({time.monotonic() - started:.0f} s)", flush=True
        )
    matrix.watch.stop()
    statuses = matrix.statuses()
    return {
        "faults_run": len(results),
        "faults_survived": sum(1 for problems in results.values() if not problems),
        "duplicate_trainers": len(matrix.watch.duplicates),
        "running_without_process_max": max(
            matrix.watch.running_without_process.values(), default=0.0
        ),
        "orphan_seconds_max": max(matrix.watch.orphans.values(), default=0.0),
        "lost_jobs": sum(1 for status in statuses.values() if status not in TERMINAL),
        "server_errors": len(matrix.browser.server_errors),
    }


def run_one(which: str, only: list[str] | None) -> dict[str, float]:
    database = f"jt_faults_{os.getpid()}"
    if which == "production":
        benchdb.admin(f"CREATE DATABASE {database}")
        platform: Platform = Production(database)
    else:
        platform = Embedded()
    try:
        return run_matrix(platform, only)
    finally:
        platform.stop()
        print(f"# {which}: {platform.restarts} restarts; logs in {platform.data_root}/logs")
        if which == "production":
            from django.db import connections

            connections.close_all()
            benchdb.admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="run only these faults")
    parser.add_argument("--platform", choices=("both", "production", "embedded"), default="both")
    args = parser.parse_args()
    if args.platform != "both":
        figures = run_one(args.platform, args.only)
        for name, value in figures.items():
            print(f"{name}: {value:.1f}{UNITS[name]}" if name in UNITS else f"{name}: {value}")
        return
    # Each platform in a process of its own: Django is set up once per process.
    combined: dict[str, list[float]] = {name: [] for name in FIGURES}
    for which in ("production", "embedded"):
        command = [PYTHON, __file__, "--platform", which]
        for name in args.only or ():
            command += ["--only", name]
        child = subprocess.run(command, capture_output=True, text=True, check=False)
        for line in child.stdout.splitlines():
            name, _colon, value = line.partition(": ")
            if name in FIGURES:
                combined[name].append(float(value.split()[0]))
                print(f"# {which} {line}")
            else:
                print(line)
        if child.returncode != 0:
            print(f"# {which} ended with code {child.returncode}:", child.stderr[-3000:])
    for name, combine in FIGURES.items():
        value = combine(combined[name]) if combined[name] else float("nan")
        print(f"{name}: {value:.1f}{UNITS[name]}" if name in UNITS else f"{name}: {value:.0f}")


if __name__ == "__main__":
    main()
