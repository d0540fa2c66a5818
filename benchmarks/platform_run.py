"""What benchmarks/faults.py and benchmarks/soak.py share: the platform's processes
started and killed one by one, a user's browser session over HTTP, and a watcher
that samples every training process and every job's status to check the
invariants the whole time, not only at the end.

Trainers are found the way an operator would find them: by their command line
(`python -m trainer run --spec <data root>/jobs/<id>/spec.json`) and their RANK.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def manage(env: dict[str, str], *args: str, timeout: float = 600) -> None:
    subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        check=True,
        timeout=timeout,
        stdout=subprocess.DEVNULL,
    )


@dataclass(eq=False)  # kept in sets, by identity
class Service:
    """One of the platform's processes, started in its own group."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as handle:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, signum: int = signal.SIGKILL, wait: float = 30) -> None:
        """`signum` to the process; then its whole group (a pool, a beat) is ended."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(wait)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


class Browser:
    """A logged-in user: the pages' forms posted as a browser posts them."""

    def __init__(self, base: str, username: str, password: str) -> None:
        self.base = base
        self.session = requests.Session()
        # As a browser does: a GET sent on a kept-alive connection the server closed at
        # that moment (gunicorn closes idle ones after 2 s) is sent again, once.
        retry = Retry(total=1, connect=1, read=1, allowed_methods={"GET"}, status=0)
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.server_errors: list[str] = []
        self.get("/accounts/login/")  # its CSRF cookie
        self.post("/accounts/login/", {"username": username, "password": password})

    def _csrf(self) -> str:
        return self.session.cookies.get("csrftoken", "")

    def get(self, path: str) -> requests.Response:
        response = self.session.get(self.base + path, timeout=30)
        self._check(response, path)
        return response

    def post(self, path: str, data: dict) -> requests.Response:
        data = {**data, "csrfmiddlewaretoken": self._csrf()}
        response = self.session.post(
            self.base + path,
            data=data,
            headers={"Referer": self.base + path},
            timeout=30,
            allow_redirects=False,
        )
        self._check(response, path)
        return response

    def _check(self, response: requests.Response, path: str) -> None:
        if response.status_code >= 500:
            when = time.strftime("%H:%M:%S")
            self.server_errors.append(
                f"{when} {response.status_code} {response.request.method} {path}"
            )


def wait_until(check, seconds: float, step: float = 0.2):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(step)
    return None


SPEC = re.compile(r"/jobs/(\d+)/spec\.json$")


@dataclass
class Watch:
    """The invariants, sampled every `period` seconds."""

    data_root: Path
    statuses: callable  # () -> {job id: status}
    period: float = 0.25
    duplicates: set = field(default_factory=set)  # (job, rank) seen twice at once
    # longest a job was RUNNING with no process of its own, and longest a trainer
    # lived while its job was not RUNNING (an orphan), in seconds
    running_without_process: dict = field(default_factory=lambda: defaultdict(float))
    orphans: dict = field(default_factory=lambda: defaultdict(float))

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._since: dict = {}
        self._orphan_since: dict = {}

    def start(self) -> Watch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def processes(self) -> tuple[dict, set]:
        """(job, rank) -> trainer pids, and the jobs with any process (supervisor too)."""
        trainers: dict = defaultdict(list)
        anything: set = set()
        prefix = str(self.data_root / "jobs")
        for process in psutil.process_iter(["pid", "cmdline"]):
            command = process.info["cmdline"] or []
            if not command or not command[-1].startswith(prefix):
                continue
            match = SPEC.search(command[-1])
            if not match:
                continue
            job = int(match.group(1))
            anything.add(job)
            if command[1:4] != ["-m", "trainer", "run"]:
                continue  # the supervisor
            try:
                rank = int(process.environ().get("RANK", "0"))
                if process.status() == psutil.STATUS_ZOMBIE:
                    continue
            except psutil.Error:
                continue
            trainers[job, rank].append(process.pid)
        return trainers, anything

    def _run(self) -> None:
        from django.db import connection

        last = time.monotonic()
        try:
            while not self._stop.wait(self.period):
                now = time.monotonic()
                try:
                    statuses = self.statuses()
                except Exception:  # the database is being restarted: skip a sample
                    continue
                trainers, anything = self.processes()
                for key, pids in trainers.items():
                    if len(pids) > 1:
                        self.duplicates.add(key)
                for job, status in statuses.items():
                    if status == "running" and job not in anything:
                        since = self._since.setdefault(job, last)
                        self.running_without_process[job] = max(
                            self.running_without_process[job], now - since
                        )
                    else:
                        self._since.pop(job, None)
                for job, rank in trainers:
                    key = (job, rank)
                    if statuses.get(job) != "running":
                        since = self._orphan_since.setdefault(key, last)
                        self.orphans[job] = max(self.orphans[job], now - since)
                    else:
                        self._orphan_since.pop(key, None)
                for key in set(self._orphan_since) - set(trainers):
                    self._orphan_since.pop(key)
                last = now
        finally:
            connection.close()

    def trainer_pids(self, job: int) -> list[int]:
        trainers, _anything = self.processes()
        return [pid for (found, _rank), pids in trainers.items() if found == job for pid in pids]


def supervisor_pid(data_root: Path, job: int) -> int | None:
    exit_file = str(data_root / "jobs" / str(job) / "worker-0.exit")
    for process in psutil.process_iter(["pid", "cmdline"]):
        if exit_file in (process.info["cmdline"] or []):
            return process.pid
    return None
