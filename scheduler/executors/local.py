"""The local backend: each worker a child process on this machine (DESIGN.md "Executor backends").

Everything about a run lives in the job's folder, never only in memory, so a
Celery worker restarted mid-run re-attaches to what still runs and settles
what ended while it was away:

    spec.json            the trainer spec, with the report token (mode 0600)
    worker-<rank>.json   pid and process start time of the rank's supervisor
    worker-<rank>.log    stdout and stderr of the rank
    worker-<rank>.exit   the trainer's exit code, written by the supervisor

The supervisor is a few lines of python (SUPERVISOR) that starts the trainer,
waits, and writes the exit code: a Celery worker that dies cannot wait for
its children, but the supervisor outlives it in its own session.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from django.conf import settings
from django.utils.translation import gettext as _

from finetune.storage import job_dir, jobs_root
from scheduler import failpoints
from scheduler.executors import logfiles, processes
from scheduler.executors.base import (
    ClusterEvent,
    Executor,
    ExecutorError,
    LaunchRequest,
    LogChunk,
    NodeInfo,
    Phase,
    WorkloadState,
)

logger = logging.getLogger(__name__)
TAIL_BYTES = 4096
TAIL_LINES = 20
MIB = 1024 * 1024

# The group receives SIGTERM on stop; the supervisor outlives it to record the
# trainer's exit code. The code lands atomically (write, then rename). If the
# supervisor itself is killed, the kernel kills the trainer too (PR_SET_PDEATHSIG),
# so no trainer trains on, unwatched, after its job was given up.
SUPERVISOR = """\
import ctypes, os, signal, subprocess, sys
exit_path = sys.argv[1]
signal.signal(signal.SIGTERM, lambda *_: None)
supervisor = os.getpid()
# First of all, where its own process is: a launcher that dies before it records the
# worker leaves this behind, so a relaunch finds (and ends) the worker all the same.
with open(exit_path[: -len(".exit")] + ".pid.tmp", "w") as handle:
    handle.write(str(supervisor))
os.replace(exit_path[: -len(".exit")] + ".pid.tmp", exit_path[: -len(".exit")] + ".pid")
def die_with_supervisor():
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (AttributeError, OSError):
        pass  # not Linux: stop() and the orphan clean-up still find the group
    if os.getppid() != supervisor:  # it died before the line above
        os._exit(1)
code = subprocess.Popen(sys.argv[2:], preexec_fn=die_with_supervisor).wait()
with open(exit_path + ".tmp", "w") as handle:
    handle.write(str(code))
os.replace(exit_path + ".tmp", exit_path)
sys.exit(0 if code == 0 else 1)
"""


def trainer_command(spec_path: Path) -> list[str]:
    """What each worker runs; tests replace it with a small script."""
    return [sys.executable, "-m", "trainer", "run", "--spec", str(spec_path)]


class LocalExecutor(Executor):
    name = "local"

    def __init__(self) -> None:
        self.stop_grace = settings.JINGTIAO_STOP_GRACE_SECONDS

    def run_command(self, job_id: int) -> str:
        return shlex.join(trainer_command(job_dir(job_id) / "spec.json"))

    # --- launch --------------------------------------------------------------------------
    def launch(self, request: LaunchRequest) -> None:
        folder = job_dir(request.job_id)
        folder.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(request.report_token.encode()).hexdigest()
        with _locked(folder / ".launch.lock"):
            ranks = range(request.placement.node_count)
            earlier = [_read_json(_meta_path(folder, rank)) for rank in ranks]
            if any(meta and meta.get("launch") != key for meta in earlier):
                # Files of an earlier launch of this job: end it and start afresh.
                self.stop(request.job_id)
                for pattern in ("worker-*.json", "worker-*.exit", "worker-*.pid"):
                    for path in folder.glob(pattern):
                        path.unlink()
                earlier = [None for _rank in ranks]
            spec_path = folder / "spec.json"
            _write_private(spec_path, json.dumps(request.trainer_spec, ensure_ascii=False))
            master_port = _free_port()
            failpoints.failpoint("launch.before_spawn")
            for rank in ranks:
                if earlier[rank]:
                    continue  # this rank started in an attempt that then failed half-way
                # No record of this rank: a worker of an attempt whose launcher died
                # before recording it may still run, and an old exit code may lie
                # about. End the one, drop the other: never two trainers per rank.
                _end_unrecorded(folder, rank)
                self._spawn(request, folder, rank, spec_path, master_port, key)

    def _spawn(
        self,
        request: LaunchRequest,
        folder: Path,
        rank: int,
        spec_path: Path,
        master_port: int,
        key: str,
    ) -> None:
        env = {**os.environ, **_worker_env(request, rank, master_port)}
        command = [sys.executable, "-c", SUPERVISOR, str(_exit_path(folder, rank))]
        command += trainer_command(spec_path)
        try:
            with open(logfiles.log_path(folder, rank), "ab") as log:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=folder,
                    env=env,
                    start_new_session=True,  # its own group: stop signals the whole tree
                    close_fds=True,
                )
        except OSError as exc:
            raise ExecutorError(f"cannot start worker {rank}: {exc}", transient=False) from exc
        failpoints.failpoint("launch.after_spawn")
        meta = {
            "pid": process.pid,
            "create_time": processes.create_time(process.pid),
            "started_at": datetime.now(UTC).isoformat(),
            "launch": key,
        }
        _write_private(_meta_path(folder, rank), json.dumps(meta))

    # --- observe -------------------------------------------------------------------------
    def observe(self, job_ids: Iterable[int]) -> dict[int, WorkloadState]:
        return {job_id: self._state(job_id) for job_id in job_ids}

    def _state(self, job_id: int) -> WorkloadState:
        folder = job_dir(job_id)
        workers = _workers(folder)
        if not workers:
            return WorkloadState(job_id, Phase.MISSING)
        for worker in workers:
            if worker["phase"] == "failed":
                tail = _tail(logfiles.log_path(folder, worker["rank"]))
                reason = f"{worker['reason']}\n{tail}" if tail else worker["reason"]
                return WorkloadState(
                    job_id, Phase.FAILED, reason, worker["exit_code"], workers=tuple(workers)
                )
        if all(worker["phase"] == "succeeded" for worker in workers):
            return WorkloadState(job_id, Phase.SUCCEEDED, exit_code=0, workers=tuple(workers))
        started = min(worker["started_at"] for worker in workers)
        return WorkloadState(
            job_id, Phase.RUNNING, since=datetime.fromisoformat(started), workers=tuple(workers)
        )

    def managed_job_ids(self) -> set[int]:
        found = set()
        root = jobs_root()
        if not root.is_dir():
            return found
        for folder in root.iterdir():
            if not folder.name.isdigit():
                continue
            running = any(w["phase"] == "running" for w in _workers(folder))
            unrecorded = any(
                _unrecorded_supervisor(folder, rank) for rank in _unrecorded_ranks(folder)
            )
            if running or unrecorded:
                found.add(int(folder.name))
        return found

    # --- stop ----------------------------------------------------------------------------
    def stop(self, job_id: int, *, keep_logs: bool = True) -> None:
        """SIGTERM to each worker's process group, SIGKILL after the grace period.
        The logs are in the job's folder already and stay there."""
        folder = job_dir(job_id)
        groups = [
            meta["pid"]
            for rank in _ranks(folder)
            if (meta := _read_json(_meta_path(folder, rank))) and processes.alive(meta)
        ]
        for group in groups:
            processes.signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace
        while groups and time.monotonic() < deadline:
            groups = [group for group in groups if processes.group_alive(group)]
            time.sleep(0.05)
        for group in groups:
            processes.signal_group(group, signal.SIGKILL)
        for rank in _unrecorded_ranks(folder):
            _end_unrecorded(folder, rank)

    # --- logs and events -----------------------------------------------------------------
    def logs(
        self, job_id: int, since: str | None = None, *, tail: bool = False
    ) -> Sequence[LogChunk]:
        """Per worker from a byte offset; never more than a page of each in memory."""
        folder = job_dir(job_id)
        ended = {worker["rank"]: worker["phase"] != "running" for worker in _workers(folder)}
        return logfiles.read_pages(folder, ended, since, tail=tail)

    def log_blocks(self, job_id: int, rank: int) -> Iterator[bytes]:
        path = logfiles.log_path(job_dir(job_id), rank)
        if not path.is_file():
            raise LookupError(path.name)
        return logfiles.blocks(path)

    def events(self, job_id: int) -> Sequence[ClusterEvent]:
        folder = job_dir(job_id)
        found = []
        for worker in _workers(folder):
            rank = worker["rank"]
            started = datetime.fromisoformat(worker["started_at"])
            message = _("worker %(rank)d started as process %(pid)d") % {
                "rank": rank,
                "pid": worker["pid"],
            }
            found.append(ClusterEvent(started, "Normal", "Started", message, rank))
            if worker["phase"] in ("succeeded", "failed"):
                exit_path = _exit_path(folder, rank)
                when = (
                    datetime.fromtimestamp(exit_path.stat().st_mtime, UTC)
                    if exit_path.exists()
                    else None
                )
                kind = "Normal" if worker["phase"] == "succeeded" else "Warning"
                found.append(ClusterEvent(when, kind, "Exited", worker["reason"], rank))
        oldest = datetime.min.replace(tzinfo=UTC)
        return sorted(found, key=lambda event: event.time or oldest)

    # --- nodes ---------------------------------------------------------------------------
    def nodes(self) -> Sequence[NodeInfo]:
        device_type, count = detect_devices()
        return [
            NodeInfo(
                name=settings.JINGTIAO_LOCAL_NODE_NAME or socket.gethostname(),
                cpu_millis=(os.cpu_count() or 1) * 1000,
                memory_mib=psutil.virtual_memory().total // MIB,
                device_type=device_type,
                device_count=count,
            )
        ]


def detect_devices() -> tuple[str, int]:
    """MLUs, else GPUs, on this machine: from the device files the drivers create,
    else from cnmon / nvidia-smi. Importing torch just to count would take seconds."""
    dev = Path("/dev")
    mlus = [p for p in dev.glob("cambricon_dev*") if re.fullmatch(r"cambricon_dev\d+", p.name)]
    count = len(mlus) or _tool_count(["cnmon", "info", "-c"], r"^\s*Card\s*\d+")
    if count:
        return "mlu", count
    gpus = [p for p in dev.glob("nvidia*") if re.fullmatch(r"nvidia\d+", p.name)]
    count = len(gpus) or _tool_count(["nvidia-smi", "-L"], r"^GPU \d+:")
    return ("gpu", count) if count else ("none", 0)


def _tool_count(command: list[str], pattern: str) -> int:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return len(re.findall(pattern, result.stdout, flags=re.MULTILINE))


def _worker_env(request: LaunchRequest, rank: int, master_port: int) -> dict[str, str]:
    placement = request.placement
    env = {
        "RANK": str(rank),
        "NODE_RANK": str(rank),
        "LOCAL_RANK": "0",
        "WORLD_SIZE": str(placement.node_count),
        "NNODES": str(placement.node_count),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(master_port),
        "JINGTIAO_JOB_ID": str(request.job_id),
        "JINGTIAO_WORKER_ID": f"local-{request.job_id}-{rank}",
        "PYTHONUNBUFFERED": "1",
        # The trainer package sits beside the platform's code; a worker runs in
        # its job's folder, so name the code's folder whether or not it is installed.
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(settings.BASE_DIR), os.environ.get("PYTHONPATH", "")])
        ),
    }
    devices = ",".join(map(str, placement.device_ids.get(placement.nodes[rank], ())))
    # Only the devices the planner gave this job are visible; a CPU-only job sees none.
    env["CUDA_VISIBLE_DEVICES"] = devices if placement.device_type == "gpu" else ""
    env["MLU_VISIBLE_DEVICES"] = devices if placement.device_type == "mlu" else ""
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _meta_path(folder: Path, rank: int) -> Path:
    return folder / f"worker-{rank}.json"


def _exit_path(folder: Path, rank: int) -> Path:
    return folder / f"worker-{rank}.exit"


def _pid_path(folder: Path, rank: int) -> Path:
    """Written by the supervisor itself as it starts (SUPERVISOR)."""
    return folder / f"worker-{rank}.pid"


def _unrecorded_supervisor(folder: Path, rank: int) -> int | None:
    """The pid of a live supervisor of this rank that is in no record: its pid file names
    it, and its command line names this rank's exit file (so the pid is not reused)."""
    pid = _read_int(_pid_path(folder, rank))
    if pid is None or pid <= 1:
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return pid if str(_exit_path(folder, rank)) in process.cmdline() else None
    except psutil.Error:
        return None


def _unrecorded_ranks(folder: Path) -> list[int]:
    recorded = set(_ranks(folder))
    return [rank for rank in _ranks(folder, "pid") if rank not in recorded]


def _end_unrecorded(folder: Path, rank: int) -> None:
    """Kill the process group of a supervisor of this rank that left its pid file but no
    record (its launcher died in between), then remove what that attempt left."""
    pid = _unrecorded_supervisor(folder, rank)
    if pid is not None:
        logger.warning("worker %s of job %s ran unrecorded: ending it", rank, folder.name)
        processes.signal_group(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while processes.group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    for path in (_pid_path(folder, rank), _exit_path(folder, rank)):
        path.unlink(missing_ok=True)


def _ranks(folder: Path, kind: str = "json") -> list[int]:
    """The ranks with a `worker-<rank>.<kind>` file: a record (json), a pid file (pid)."""
    if not folder.is_dir():
        return []
    pattern = re.compile(rf"worker-(\d+)\.{kind}")
    found = (pattern.fullmatch(path.name) for path in folder.iterdir())
    return sorted(int(match.group(1)) for match in found if match)


def _workers(folder: Path) -> list[dict[str, Any]]:
    """Each rank's phase from its files and, while no exit code is written, its process."""
    workers = []
    for rank in _ranks(folder):
        meta = _read_json(_meta_path(folder, rank))
        if not meta:
            continue
        code = _read_int(_exit_path(folder, rank))
        worker = {"rank": rank, "pid": meta["pid"], "started_at": meta["started_at"]}
        if code is None and processes.alive(meta):
            worker.update(phase="running", exit_code=None, reason="")
        elif code is None:
            # A stray exit file may still land between the liveness check and here.
            code = _read_int(_exit_path(folder, rank))
        if "phase" not in worker:
            worker.update(phase="succeeded" if code == 0 else "failed", exit_code=code)
            worker["reason"] = _exit_reason(rank, code)
        workers.append(worker)
    return workers


def _exit_reason(rank: int, code: int | None) -> str:
    if code is None:
        return _(
            "worker %(rank)d ended without an exit code (its process was killed from outside)"
        ) % {"rank": rank}
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        hint = _(" (possibly out of memory)") if -code == signal.SIGKILL else ""
        return _("worker %(rank)d was killed by signal %(signal)s%(hint)s") % {
            "rank": rank,
            "signal": name,
            "hint": hint,
        }
    return _("worker %(rank)d exited with code %(code)d") % {"rank": rank, "code": code}


def _read_int(path: Path) -> int | None:
    """The whole number a small file holds (an exit code, a pid), or None."""
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_private(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def _tail(path: Path) -> str:
    """The last lines of a log, reading at most TAIL_BYTES from its end."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - TAIL_BYTES))
            data = handle.read()
    except FileNotFoundError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()
    if size > TAIL_BYTES:
        lines = lines[1:]  # the first line was cut by the seek
    return "\n".join(lines[-TAIL_LINES:])


@contextmanager
def _locked(path: Path):
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
