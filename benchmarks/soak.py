"""A soak of the embedded run: what bin/demo starts, used as people use it.

    python benchmarks/soak.py [--jobs 40] [--minutes 5]

Starts `python manage.py run_embedded` on its own data root (SQLite, the
embedded Redis, the local executor) with the demo seeded, then creates `--jobs`
tiny jobs (LoRA SFT of the demo's tiny Llama, 3 steps) through the create page
as alice, evenly over `--minutes`, while two other sessions (bob and the admin)
poll the job list and the newest job's detail page every 2 s. Waits for every
job to end. Prints each figure on its own line:

    soak_jobs_succeeded (of the jobs created), soak_worker_crashes (restarts of the
    worker by run_embedded, and of the broker and web server beside it),
    soak_server_errors (5xx answers), soak_polls, soak_seconds
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from platform_run import PYTHON, ROOT, Browser, Service, free_port, manage, wait_until

TERMINAL = {"succeeded", "failed", "stopped", "expired"}
DRAIN_SECONDS = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()

    data_root = Path(f"/tmp/jt-soak-{os.getpid()}")  # short: the broker's socket is in it
    shutil.rmtree(data_root, ignore_errors=True)
    (data_root / "logs").mkdir(parents=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        JINGTIAO_DATA_ROOT=str(data_root),
        JINGTIAO_REPORT_URL=base,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    os.environ.clear()
    os.environ.update(env)
    import django

    django.setup()
    from finetune.models import Dataset, Job, ModelRepo
    from scheduler.models import NodeSpec
    from tests.finetune.pages_support import job_post

    manage(env, "migrate", "--no-input", "-v0")
    manage(env, "collectstatic", "--no-input", "-v0")
    manage(env, "seed_demo")
    run = Service(
        "embedded",
        [PYTHON, str(ROOT / "manage.py"), "run_embedded", "--port", str(port)],
        env,
        data_root / "logs" / "run_embedded.log",
    )
    run.start()
    started = time.monotonic()
    created: list[int] = []
    polls = 0
    stop = threading.Event()
    try:
        if not wait_until(lambda: _healthy(base), 120, step=0.5):
            raise RuntimeError(f"the embedded run did not become ready; see {data_root}/logs")
        alice = Browser(base, "alice", "jingtiao-alice")
        watchers = [Browser(base, "bob", "jingtiao-bob"), Browser(base, "admin", "jingtiao-admin")]
        draft = job_post(
            Dataset.objects.get(name="sft-chat-train"),
            ModelRepo.objects.get(name="sft-models"),
            NodeSpec.objects.get(name="cpu-1c2g"),
        )
        draft.update({"param-max_steps": "3", "param-max_length": "64", "access": "ro"})

        def poll(browser: Browser) -> None:
            nonlocal polls
            while not stop.wait(2.0):
                try:
                    browser.get("/jobs/")
                    if created:
                        browser.get(f"/jobs/{created[-1]}/")
                    polls += 1
                except Exception as exc:  # a refused connection, a time-out: no answer
                    browser.server_errors.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=poll, args=(b,), daemon=True) for b in watchers]
        for thread in threads:
            thread.start()
        gap = args.minutes * 60 / max(1, args.jobs)
        for number in range(args.jobs):
            due = started + number * gap
            time.sleep(max(0.0, due - time.monotonic()))
            name = f"soak-{number + 1}"
            response = alice.post("/jobs/new/", {**draft, "name": name})
            if response.status_code == 302:
                created.append(Job.objects.get(name=name).pk)
            else:
                print(f"# {name}: create answered {response.status_code}", file=sys.stderr)

        def all_ended() -> bool:
            statuses = Job.objects.filter(pk__in=created).values_list("status", flat=True)
            return all(status in TERMINAL for status in statuses)

        wait_until(all_ended, DRAIN_SECONDS, step=2.0)
        stop.set()
        for thread in threads:
            thread.join()
        statuses = dict(Job.objects.filter(pk__in=created).values_list("pk", "status"))
        succeeded = sum(1 for status in statuses.values() if status == "succeeded")
        for job in Job.objects.filter(pk__in=created).exclude(status="succeeded"):
            print(f"# job {job.pk} {job.status}: {job.status_reason[:300]}", file=sys.stderr)
        state = json.loads((data_root / "logs" / "embedded.json").read_text())
        errors = alice.server_errors + [e for b in watchers for e in b.server_errors]
        print(f"soak_jobs_succeeded: {succeeded} of {args.jobs}")
        print(f"soak_worker_crashes: {state['worker']['restarts']}")
        print(f"soak_broker_crashes: {state.get('broker', {}).get('restarts', 0)}")
        print(f"soak_web_crashes: {state['web']['restarts']}")
        for error in errors:
            print(f"# server error: {error}")
        print(f"soak_server_errors: {len(errors)}")
        print(f"soak_polls: {polls}")
        print(f"soak_seconds: {time.monotonic() - started:.0f} s")
    finally:
        stop.set()
        run.kill(signal.SIGTERM, wait=60)
        kept = Path(f"/tmp/jt-soak-logs-{os.getpid()}")
        shutil.copytree(data_root / "logs", kept, dirs_exist_ok=True)
        print(f"# logs kept in {kept}")
        shutil.rmtree(data_root, ignore_errors=True)


def _healthy(url: str) -> bool:
    import requests

    try:
        return requests.get(f"{url}/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


if __name__ == "__main__":
    main()
