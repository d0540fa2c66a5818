"""The local backend: each worker a child process on this machine (DESIGN.md "Executor backends").

Everything about a run lives in the job's folder, never only in memory, so a
Celery worker restarted mid-run re-attaches to what still runs and settles
what ended while it was away:

    spec.json            the trainer spec, with the report token (mode 0600)
    worker-<rank>.json   the rank's record: its supervisor's pid and start time, and
                         the launch it belongs to (the hash of that launch's token)
    worker-<rank>.log    stdout and stderr of the rank
    worker-<rank>.exit   the trainer's exit code, written by the supervisor

The supervisor is a few lines of python (SUPERVISOR) that writes the rank's
record, starts the trainer, waits, and writes the exit code: a Celery worker
that dies cannot wait for its children, but the supervisor outlives it in its
own session. The record is written by the supervisor itself, atomically and
before the trainer starts, so no trainer ever runs unrecorded, whenever the
launcher dies. A process of the job that is in no record of the current launch
(one whose record was lost, one of an attempt gone by) is found by its command
line, which names the job's folder, and ended with its whole session.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
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
from django.utils.translation import gettext_noop

from config import failpoints
from finetune.reports import hash_token
from finetune.storage import job_dir, jobs_root
from finetune.texts import said
from scheduler.executors import commands, logfiles, processes
from scheduler.executors.base import (
    ClusterEvent,
    Executor,
    ExecutorError,
    LaunchRequest,
    LogChunk,
    NodeInfo,
    Phase,
    WorkloadState,
    failure_detail,
)

logger = logging.getLogger(__name__)
# A failed worker's log is read this far back for the line that says why (torchrun's
# report of the failed ranks alone is some 2 KiB after it).
TAIL_BYTES = 16 * 1024
MIB = 1024 * 1024

# The group receives SIGTERM on stop; the supervisor outlives it to record the
# trainer's exit code. Record and exit code land atomically (write, then rename). If
# the supervisor itself is killed, the kernel kills the trainer too (PR_SET_PDEATHSIG),
# so no trainer trains on, unwatched, after its job was given up.
SUPERVISOR = """\
import ctypes, json, os, signal, subprocess, sys
from datetime import datetime, timezone
record_path, exit_path, launch = sys.argv[1:4]
signal.signal(signal.SIGTERM, lambda *_: None)
supervisor = os.getpid()
try:
    import psutil
    created = psutil.Process(supervisor).create_time()
except Exception:
    created = None
record = {"pid": supervisor, "create_time": created, "launch": launch,
          "started_at": datetime.now(timezone.utc).isoformat()}
temporary = record_path + ".tmp"
with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
    json.dump(record, out)
os.replace(temporary, record_path)
def die_with_supervisor():
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (AttributeError, OSError):
        pass  # not Linux: stop() and the clean-up still find the trainer by its command
    if os.getppid() != supervisor:  # it died before the line above
        os._exit(1)
code = subprocess.Popen(sys.argv[4:], preexec_fn=die_with_supervisor).wait()
with open(exit_path + ".tmp", "w") as handle:
    handle.write(str(code))
os.replace(exit_path + ".tmp", exit_path)
sys.exit(0 if code == 0 else 1)
"""
RECORD_SECONDS = 15  # how long a launch waits for a supervisor to write its record
LOOPBACK = "127.0.0.1"


def trainer_command(spec_path: Path) -> list[str]:
    """What each worker runs; tests replace it with a small script."""
    return [sys.executable, "-m", "trainer", "run", "--spec", str(spec_path)]


class LocalExecutor(Executor):
    name = "local"

    def __init__(self) -> None:
        self.stop_grace = settings.JINGTIAO_STOP_GRACE_SECONDS

    def run_command(self, request: LaunchRequest) -> str:
        trainer = trainer_command(job_dir(request.job_id) / "spec.json")
        return commands.shown(
            commands.node_command(
                request.placement,
                trainer,
                python=sys.executable,
                node_rank="$NODE_RANK",
                master_addr=LOOPBACK,
                master_port="$MASTER_PORT",
            )
        )

    # --- launch --------------------------------------------------------------------------
    def launch(self, request: LaunchRequest) -> None:
        folder = job_dir(request.job_id)
        folder.mkdir(parents=True, exist_ok=True)
        key = hash_token(request.report_token)
        with _locked(folder / ".launch.lock"):
            ranks = range(request.placement.node_count)
            records = [_read_json(_meta_path(folder, rank)) for rank in ranks]
            if any(record and record.get("launch") != key for record in records):
                # Files of an earlier launch of this job: end it and start afresh.
                self.stop(request.job_id)
                for pattern in ("worker-*.json", "worker-*.exit"):
                    for path in folder.glob(pattern):
                        path.unlink()
                records = [None for _rank in ranks]
            # Any process of this job in no record of this launch (an attempt whose
            # record was lost, say) ends before a worker starts: never two per rank.
            ours = {record["pid"] for record in records if record}
            _end_sessions(_job_sessions(folder) - ours, folder)
            spec_path = folder / "spec.json"
            _write_private(spec_path, json.dumps(request.trainer_spec, ensure_ascii=False))
            master_port = _free_port()
            first_device = {node.name: first for node, first in local_nodes()}
            failpoints.failpoint("launch.before_spawn")
            for rank in ranks:
                if records[rank]:
                    continue  # this rank started in an attempt that then failed half-way
                _exit_path(folder, rank).unlink(missing_ok=True)
                env = _worker_env(request, rank, master_port, first_device)
                self._spawn(request, folder, rank, spec_path, master_port, key, env)

    def _spawn(
        self,
        request: LaunchRequest,
        folder: Path,
        rank: int,
        spec_path: Path,
        master_port: int,
        key: str,
        env: dict[str, str],
    ) -> None:
        record_path = _meta_path(folder, rank)
        command = [
            sys.executable,
            "-c",
            SUPERVISOR,
            str(record_path),
            str(_exit_path(folder, rank)),
            key,
        ]
        command += commands.node_command(
            request.placement,
            trainer_command(spec_path),
            python=sys.executable,
            node_rank=str(rank),
            master_addr=LOOPBACK,
            master_port=str(master_port),
        )
        try:
            with open(logfiles.log_path(folder, rank), "ab") as log:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=folder,
                    env={**os.environ, **env},
                    start_new_session=True,  # its own group: stop signals the whole tree
                    close_fds=True,
                )
        except OSError as exc:
            raise ExecutorError(f"cannot start worker {rank}: {exc}", transient=False) from exc
        failpoints.failpoint("launch.after_spawn")
        deadline = time.monotonic() + RECORD_SECONDS
        while (_read_json(record_path) or {}).get("pid") != process.pid:
            if process.poll() is not None:
                raise ExecutorError(
                    f"worker {rank} exited at once with code {process.returncode}; "
                    f"see {logfiles.log_path(folder, rank).name}",
                    transient=False,
                )
            if time.monotonic() > deadline:
                raise ExecutorError(f"worker {rank} did not start in time", transient=True)
            time.sleep(0.02)

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
                line, excerpt = failure_detail(
                    worker["reason"], _tail(logfiles.log_path(folder, worker["rank"]))
                )
                return WorkloadState(
                    job_id,
                    Phase.FAILED,
                    line,
                    worker["exit_code"],
                    log_excerpt=excerpt,
                    workers=tuple(workers),
                )
        if all(worker["phase"] == "succeeded" for worker in workers):
            return WorkloadState(job_id, Phase.SUCCEEDED, exit_code=0, workers=tuple(workers))
        started = min(worker["started_at"] for worker in workers)
        return WorkloadState(
            job_id, Phase.RUNNING, since=datetime.fromisoformat(started), workers=tuple(workers)
        )

    def managed_job_ids(self) -> set[int]:
        """Jobs with any live process: each supervisor and trainer names a file in its
        job's folder on its command line. One pass over the process table, however many
        job folders the history left."""
        return set(_processes_by_job())

    # --- stop ----------------------------------------------------------------------------
    def stop(self, job_id: int, *, keep_logs: bool = True) -> None:
        """SIGTERM to each worker's session, SIGKILL after the grace period; a process of
        the job that is in no record goes too. The logs stay in the job's folder."""
        folder = job_dir(job_id)
        groups = {
            meta["pid"]
            for rank in _ranks(folder)
            if (meta := _read_json(_meta_path(folder, rank))) and processes.alive(meta)
        }
        groups |= _job_sessions(folder)
        for group in groups:
            processes.signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace
        while groups and time.monotonic() < deadline:
            groups = {group for group in groups if processes.group_alive(group)}
            time.sleep(0.05)
        _end_sessions(groups, folder)

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
            message = said(
                gettext_noop("worker %(rank)d started as process %(pid)d"),
                {
                    "rank": rank,
                    "pid": worker["pid"],
                },
            )
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
        """This machine, or with JINGTIAO_LOCAL_NODES=n, n nodes that share out its CPUs,
        memory and devices, so that multi-node launches run on one machine."""
        return [node for node, _first_device in local_nodes()]


def local_nodes() -> list[tuple[NodeInfo, int]]:
    """Each node this machine presents, with the index of its first device."""
    device_type, count = detect_devices()
    parts = settings.JINGTIAO_LOCAL_NODES
    base = settings.JINGTIAO_LOCAL_NODE_NAME or socket.gethostname()
    cpu_millis = (os.cpu_count() or 1) * 1000 // parts
    memory_mib = psutil.virtual_memory().total // MIB // parts
    devices = count // parts
    return [
        (
            NodeInfo(
                name=base if parts == 1 else f"{base}-{index}",
                cpu_millis=cpu_millis,
                memory_mib=memory_mib,
                device_type=device_type if devices else "none",
                device_count=devices,
            ),
            index * devices,
        )
        for index in range(parts)
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


def _worker_env(
    request: LaunchRequest, rank: int, master_port: int, first_device: dict[str, int]
) -> dict[str, str]:
    """The environment of node `rank`'s process (torchrun adds each trainer's RANK,
    LOCAL_RANK and WORLD_SIZE; a job of one process has none of them). `first_device`:
    the index of each local node's first device (local_nodes)."""
    placement = request.placement
    env = {
        "NODE_RANK": str(rank),
        "NNODES": str(placement.node_count),
        "MASTER_ADDR": LOOPBACK,
        "MASTER_PORT": str(master_port),
        "OMP_NUM_THREADS": str(commands.threads_per_process(placement)),
        "JINGTIAO_JOB_ID": str(request.job_id),
        "JINGTIAO_WORKER_ID": f"local-{request.job_id}-{rank}",
        "PYTHONUNBUFFERED": "1",
        # The trainer package sits beside the platform's code; a worker runs in
        # its job's folder, so name the code's folder whether or not it is installed.
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(settings.BASE_DIR), os.environ.get("PYTHONPATH", "")])
        ),
    }
    node = placement.nodes[rank]
    first = first_device.get(node, 0)
    devices = ",".join(str(first + index) for index in placement.device_ids.get(node, ()))
    # Only the devices the planner gave this job are visible; a CPU-only job sees none.
    # Cambricon's runtime reads CAMBRICON_VISIBLE_DEVICES (its device plugin sets the same
    # in a pod); MLU_VISIBLE_DEVICES is the older name some builds of torch_mlu still read.
    mlu = devices if placement.device_type == "mlu" else ""
    env["CUDA_VISIBLE_DEVICES"] = devices if placement.device_type == "gpu" else ""
    env["CAMBRICON_VISIBLE_DEVICES"] = mlu
    env["MLU_VISIBLE_DEVICES"] = mlu
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _meta_path(folder: Path, rank: int) -> Path:
    return folder / f"worker-{rank}.json"


def _exit_path(folder: Path, rank: int) -> Path:
    return folder / f"worker-{rank}.exit"


def _processes_by_job() -> dict[int, set[int]]:
    """job id -> the sessions of the live supervisors and trainers of that job, found by
    their command lines (a supervisor runs SUPERVISOR on its record's path, a trainer
    `--spec <job folder>/spec.json`). One pass over the process table; a process of a
    job is found whatever became of its supervisor or its record, and nothing else
    that names a job's file (an operator's `tail -f` of a log) is ever taken for one."""
    prefix = f"{jobs_root()}{os.sep}"
    found: dict[int, set[int]] = {}
    for process in psutil.process_iter(["cmdline", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            job = _job_of(process.info["cmdline"] or [], prefix)
            if job is not None:
                found.setdefault(job, set()).add(os.getsid(process.pid))
        except (psutil.Error, ProcessLookupError):
            continue
    return found


def _job_of(command: list[str], prefix: str) -> int | None:
    if command[1:3] == ["-c", SUPERVISOR] and len(command) > 3:
        path = command[3]
    elif "--spec" in command[:-1]:
        path = command[command.index("--spec") + 1]
        if not path.endswith(f"{os.sep}spec.json"):
            return None
    else:
        return None
    if not path.startswith(prefix):
        return None
    job = path[len(prefix) :].split(os.sep, 1)[0]
    return int(job) if job.isdigit() else None


def _job_sessions(folder: Path) -> set[int]:
    if not folder.name.isdigit():
        return set()
    return _processes_by_job().get(int(folder.name), set()) - {os.getsid(0)}


def _end_sessions(sessions: Iterable[int], folder: Path) -> None:
    """SIGKILL whole sessions of a job's processes, and wait (briefly) until they are gone."""
    sessions = set(sessions)
    if not sessions:
        return
    logger.warning("job %s: ending processes in no record: sessions %s", folder.name, sessions)
    for session in sessions:
        processes.signal_group(session, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(processes.group_alive(s) for s in sessions) and time.monotonic() < deadline:
        time.sleep(0.05)


def _ranks(folder: Path) -> list[int]:
    """The ranks with a record, `worker-<rank>.json`."""
    if not folder.is_dir():
        return []
    pattern = re.compile(r"worker-(\d+)\.json")
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
        return said(
            gettext_noop(
                "worker %(rank)d ended without an exit code (its process was killed from outside)"
            ),
            {"rank": rank},
        )
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        killed = -code == signal.SIGKILL
        hint = said(gettext_noop(" (possibly out of memory)"), {}) if killed else ""
        return said(
            gettext_noop("worker %(rank)d was killed by signal %(signal)s%(hint)s"),
            {
                "rank": rank,
                "signal": name,
                "hint": hint,
            },
        )
    return said(
        gettext_noop("worker %(rank)d exited with code %(code)d"), {"rank": rank, "code": code}
    )


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
    """The end of a log, reading at most TAIL_BYTES from its end."""
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
    return "\n".join(lines)


@contextmanager
def _locked(path: Path):
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
