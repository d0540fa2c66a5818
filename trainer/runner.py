"""``python -m trainer run``: one job from spec to published output.

Exit status 0 means the output folder holds a complete result with its manifest.
Anything else exits non-zero, and the last log line says why: the local executor and
the pod logs show that line as the job's failure reason.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from trainer import memory
from trainer.context import RunContext, TrainResult
from trainer.datavalidation import validate
from trainer.output import METRICS, PARAMETERS, OutputError, StagedOutput, write_json
from trainer.reporting import NullReporter, Reporter
from trainer.spec import JobSpec, SpecError, load_spec

log = logging.getLogger("jingtiao")

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_TERMINATED = 1, 2, 143
FAILURE_PREFIX = "jingtiao: failed: "


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM; BaseException so no library swallows it."""


class DataError(ValueError):
    pass


def rank_tag() -> str:
    """ "[rank 3] " in a run of several processes, which share a node's log: every line
    of ours says which rank wrote it. Empty for a run of one process."""
    world = os.environ.get("WORLD_SIZE", "1").strip()
    return f"[rank {os.environ.get('RANK', '0').strip()}] " if world not in ("", "1") else ""


def setup_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)s {rank_tag()}%(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    # Route the libraries' loggers to stdout and silence their progress bars, which
    # would otherwise interleave carriage-return noise into the job log.
    import datasets
    import diffusers
    import transformers

    for library in (transformers, diffusers):
        library.utils.logging.disable_default_handler()
        library.utils.logging.enable_propagation()
        library.utils.logging.set_verbosity_warning()
        library.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def check_data(spec: JobSpec) -> None:
    """Refuse bad data before any model is loaded, naming the rows at fault."""
    sets = [
        ("training", spec.train_data),
        ("validation", spec.validation_data),
        ("test", spec.test_data),
    ]
    for label, path in sets:
        if not path:
            continue
        report = validate(spec.scenario, path, algorithm=spec.algorithm, max_problems=5)
        if not report.ok:
            shown = "; ".join(str(problem) for problem in report.problems)
            more = report.problem_count - len(report.problems)
            extra = f" (and {more} more)" if more > 0 else ""
            raise DataError(f"{label} data {path}: {shown}{extra}")
        log.info("%s data: %s", label, report.summary())


def _worker_id(rank: int, local_rank: int) -> str:
    """The name this process reports under: its node's worker, and on a node of several
    processes its local rank too ("local-7-1:3"), so each device has its own series."""
    node = os.environ.get("JINGTIAO_WORKER_ID") or f"{socket.gethostname()}-rank{rank}"
    processes = os.environ.get("LOCAL_WORLD_SIZE", "1").strip()
    return f"{node}:{local_rank}" if processes not in ("", "1") else node


def execute(spec: JobSpec, extra_callbacks: list[Any] | None = None) -> Path:
    """Train ``spec`` and publish its output; raises on any failure."""
    from trainer.algorithms import entry_point
    from trainer.allocator import current_allocator
    from trainer.devices import detect_device, distributed_from_env, physical_device
    from trainer.resources import ResourceSampler

    check_data(spec)
    dist = distributed_from_env()
    device = detect_device()
    log.info(
        "job %s: %s on %s (%s), rank %s of %s, malloc %s",
        spec.job_id,
        spec.algorithm,
        device.kind,
        device.backend,
        dist.rank,
        dist.world_size,
        current_allocator(),
    )
    output = StagedOutput(spec.output_dir, is_main=dist.is_main)
    reporter: Any = NullReporter()
    sample_seconds = 15.0
    if spec.report:
        reporter = Reporter(
            spec.report.url,
            spec.report.token,
            spec.job_id,
            _worker_id(dist.rank, dist.local_rank),
            interval=spec.report.interval,
            # The platform no longer counts this run as its job's (ended, deleted,
            # relaunched): stop as a stop from the platform would, through SIGTERM.
            on_revoked=lambda _reason: os.kill(os.getpid(), signal.SIGTERM),
        )
        sample_seconds = spec.report.sample_seconds
    sampler = ResourceSampler(
        reporter.resource,
        device_kind=device.kind,
        device_index=physical_device(device, dist.local_rank),
        interval=sample_seconds,
    )
    try:
        output.prepare()
        sampler.start()
        context = RunContext(
            spec=spec,
            device=device,
            dist=dist,
            staging=output.staging,
            checkpoints=output.checkpoints,
            reporter=reporter,
            extra_callbacks=list(extra_callbacks or []),
        )
        estimated = estimate_memory(context)
        started = time.monotonic()
        result: TrainResult = entry_point(spec.algorithm)(context)
        report_peak(context, estimated, result)
        if dist.is_main:
            publish(output, spec, result, time.monotonic() - started)
        return output.final
    finally:
        sampler.stop()
        reporter.close(timeout=5.0)
        output.discard()
        leave_process_group()


def leave_process_group() -> None:
    """Close the collective backend before the interpreter exits: a process that exits
    with its group open can abort in the backend's threads (seen with DeepSpeed on gloo)
    and turn a finished run into a failed rank."""
    torch_distributed = sys.modules.get("torch.distributed")
    if torch_distributed is not None and torch_distributed.is_initialized():
        torch_distributed.destroy_process_group()


def estimate_memory(ctx: RunContext) -> Any:
    """The memory estimate of this process (trainer/memory.py), logged before training;
    None where the model is not a language model the formula knows."""
    from trainer.algorithms.common import sharding_of, workload

    if ctx.spec.info.model_kind != "llm":
        return None
    try:
        work = workload(ctx)
    except memory.ShapeError as exc:
        log.info("memory estimate: none (%s)", exc)
        return None
    found = memory.estimate(replace(work, sharding=sharding_of(ctx)))
    log.info("memory estimate: %s", memory.describe(found))
    return found


def report_peak(ctx: RunContext, estimated: Any, result: TrainResult) -> None:
    """Log this process's measured peak beside the estimate; rank 0's goes in the metrics."""
    peak = ctx.training_peak or memory.measured_peak(ctx.device.kind, ctx.dist.local_rank)
    if estimated is None:
        log.info("peak memory: %.2f GiB", peak / memory.GIB)
        return
    error = (estimated.total - peak) / peak * 100
    log.info(
        "peak memory: %.2f GiB per device, estimated %.2f GiB (%+.0f %%)",
        peak / memory.GIB,
        estimated.gib,
        error,
    )
    result.metrics["peak_memory_bytes"] = peak
    result.metrics["estimated_memory_bytes"] = estimated.total


def publish(output: StagedOutput, spec: JobSpec, result: TrainResult, seconds: float) -> None:
    write_json(output.staging / PARAMETERS, spec.parameters)
    write_json(output.staging / METRICS, {"summary": result.metrics, "history": result.history})
    output.finish(
        {
            "job_id": spec.job_id,
            "scenario": spec.scenario,
            "algorithm": spec.algorithm,
            "model_kind": spec.info.model_kind,
            "base_model": result.base_model or spec.base_model,
            "artifacts": result.artifacts,
            "parameters_file": PARAMETERS,
            "metrics_file": METRICS,
            "metrics": result.metrics,
            "wall_seconds": round(seconds, 1),
            "spec": spec.to_dict(),
        }
    )


def run(spec_path: str, extra_callbacks: list[Any] | None = None) -> int:
    """Run one job; returns the exit status. The last line logged states the outcome."""
    setup_logging()
    previous: Callable | int | None = signal.signal(signal.SIGTERM, _on_sigterm)
    status, message = EXIT_FAILED, "unknown error"
    try:
        spec = load_spec(spec_path)
        final = execute(spec, extra_callbacks)
        status, message = 0, f"jingtiao: succeeded: output saved to {final}"
    except Terminated:
        status, message = EXIT_TERMINATED, FAILURE_PREFIX + "terminated by SIGTERM"
    except (SpecError, DataError, OutputError) as exc:
        status, message = EXIT_BAD_INPUT, FAILURE_PREFIX + str(exc)
    except KeyboardInterrupt:
        status, message = EXIT_TERMINATED, FAILURE_PREFIX + "interrupted"
    except Exception as exc:
        log.error("training failed:\n%s", traceback.format_exc())
        status, message = EXIT_FAILED, FAILURE_PREFIX + f"{type(exc).__name__}: {exc}"
    finally:
        signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
    for handler in logging.getLogger().handlers:
        handler.flush()
    # One bare line, last: the platform shows it as the job's outcome.
    line = rank_tag() + " ".join(message.split())
    print(line, flush=True)
    if status not in (0, EXIT_TERMINATED):
        leave_termination_message(line)
    return status


def leave_termination_message(line: str) -> None:
    """In a pod, the first rank to fail writes its outcome line where the kubelet takes
    the container's termination message from (JINGTIAO_TERMINATION_LOG), so the reason
    survives torchrun's report of the failed ranks after it in the log."""
    path = os.environ.get("JINGTIAO_TERMINATION_LOG")
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            if handle.seek(0, os.SEEK_END) == 0:
                handle.write(line + "\n")
    except OSError:
        pass  # nowhere to write it: the log still ends on the line
