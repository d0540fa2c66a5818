"""Time one full plan of 10,000 queued jobs on 1,000 nodes with 2,000 running jobs.

    python benchmarks/planner.py [--runs 5] [--seed 7] [--profile]

The state is generated from a seed, so every run plans the same thing: MLU, GPU and
CPU-only nodes in shared pools, dedicated pools and no pool, with two driver versions per
device type and a few unschedulable nodes; specs of 1 to 8 devices; gangs of up to 8 nodes;
one job in five constrained by pool, driver version or node names; durations from half an
hour to three days, in minutes; a few jobs that can never run. Prints the median wall time
of one plan (and its best run and CPU time: the machine may be shared), what it decided,
and what one prediction costs; then the process CPU time of one plan (median of 3) of that
uniform shape and of a heterogeneous one of the same size: about 200 groups of distinct
capacity and labels, 20 specs, three queued jobs in ten gangs of 2 to 32 nodes
(``build_heterogeneous``).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduler.planner import (
    Forecast,
    NodeState,
    Pool,
    QueuedJob,
    RunningJob,
    SpecRequest,
    plan,
    predict,
)

GIB = 1 << 30
NOW = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)


def _spec(spec_id: int, device_type: str, devices: int, cpus: int, mem_gib: int) -> SpecRequest:
    return SpecRequest(spec_id, cpus * 1000, mem_gib * GIB, device_type, devices)


SPECS = {
    "mlu": [
        _spec(1, "mlu", 1, 8, 64),
        _spec(2, "mlu", 2, 16, 128),
        _spec(3, "mlu", 4, 32, 256),
        _spec(4, "mlu", 8, 64, 512),
    ],
    "gpu": [_spec(5, "gpu", 1, 12, 96), _spec(6, "gpu", 4, 48, 384), _spec(7, "gpu", 8, 96, 768)],
    "none": [_spec(8, "none", 0, 4, 16), _spec(9, "none", 0, 16, 64)],
}
TOO_BIG = _spec(10, "mlu", 16, 64, 512)  # no node has 16 MLUs: such jobs can never run


def build_cluster(rng: random.Random) -> tuple[list[NodeState], list[Pool]]:
    pools = [
        Pool("mlu-shared"),
        Pool("gpu-shared"),
        Pool("mlu-team-a", frozenset({1, 2})),
        Pool("gpu-team-b", frozenset({3})),
    ]
    layout = [  # (count, pool, device type, devices, cpus, memory GiB, drivers)
        (380, "mlu-shared", "mlu", 8, 64, 512, ("5.10", "6.2")),
        (60, "mlu-shared", "mlu", 8, 128, 1024, ("6.2",)),
        (200, "gpu-shared", "gpu", 8, 96, 768, ("535", "550")),
        (100, "mlu-team-a", "mlu", 8, 64, 512, ("6.2",)),
        (80, "gpu-team-b", "gpu", 8, 96, 768, ("550",)),
        (120, None, "none", 0, 32, 128, (None,)),
        (60, None, "mlu", 4, 32, 256, ("5.10",)),
    ]
    nodes = []
    for count, pool, dtype, devices, cpus, mem, drivers in layout:
        for _ in range(count):
            nodes.append(
                NodeState(
                    name=f"{dtype}-{len(nodes):04d}",
                    pool=pool,
                    driver_version=rng.choice(drivers),
                    device_type=dtype,
                    cpu_millis=cpus * 1000,
                    memory_bytes=mem * GIB,
                    devices=devices,
                    schedulable=rng.random() > 0.02,
                )
            )
    return nodes, pools


def build_running(rng: random.Random, nodes: list[NodeState], count: int) -> list[RunningJob]:
    """Fill nodes first-fit with jobs that end within two days, never over capacity."""
    free = {n.name: [n.cpu_millis, n.memory_bytes, n.devices] for n in nodes if n.schedulable}
    by_type: dict[str, list[str]] = {}
    for n in nodes:
        if n.schedulable:
            by_type.setdefault(n.device_type, []).append(n.name)
    running = []
    job_id = 1_000_000
    while len(running) < count:
        dtype = rng.choices(["mlu", "gpu", "none"], [6, 3, 1])[0]
        spec = rng.choice(SPECS[dtype])
        k = 1 if spec.devices < 8 else rng.choice([1, 1, 2, 4])
        names = [
            name
            for name in rng.sample(by_type[dtype], min(40, len(by_type[dtype])))
            if free[name][0] >= spec.cpu_millis
            and free[name][1] >= spec.memory_bytes
            and free[name][2] >= spec.devices
        ][:k]
        if len(names) < k:
            continue
        for name in names:
            f = free[name]
            f[0] -= spec.cpu_millis
            f[1] -= spec.memory_bytes
            f[2] -= spec.devices
        job_id += 1
        deadline = NOW + timedelta(minutes=rng.randint(5, 48 * 60))
        running.append(RunningJob(job_id, spec, tuple(names), deadline))
    return running


def build_queue(rng: random.Random, nodes: list[NodeState], count: int) -> list[QueuedJob]:
    names_by_pool: dict[str | None, list[str]] = {}
    for n in nodes:
        names_by_pool.setdefault(n.pool, []).append(n.name)
    queue = []
    for job_id in range(1, count + 1):
        k = rng.choices([1, 2, 4, 8], [60, 20, 12, 8])[0]
        dtype = rng.choices(["mlu", "gpu", "none"], [6, 3, 1])[0]
        if k > 1 and dtype != "none":
            specs = (SPECS[dtype][-1],)  # gangs take whole nodes
            if rng.random() < 0.3:  # ... of either accelerator, MLU preferred
                specs = (SPECS["mlu"][-1], SPECS["gpu"][-1])
        else:
            first = rng.randrange(len(SPECS[dtype]))
            specs = tuple(SPECS[dtype][first : first + rng.choice([1, 2])])
        pool = driver = None
        node_names: tuple[str, ...] = ()
        project = rng.randint(1, 6)
        if rng.random() < 0.2:
            kind = rng.choice(["pool", "driver", "names"])
            if kind == "pool":
                pool = {"mlu": "mlu-team-a", "gpu": "gpu-team-b", "none": None}[
                    specs[0].device_type
                ]
                project = 1 if pool == "mlu-team-a" else 3
            elif kind == "driver":
                driver = {"mlu": "6.2", "gpu": "550", "none": None}[specs[0].device_type]
            else:
                pick = [
                    n
                    for n in names_by_pool.get(
                        {"mlu": "mlu-shared", "gpu": "gpu-shared", "none": None}[
                            specs[0].device_type
                        ],
                        [],
                    )
                ]
                node_names = tuple(rng.sample(pick, min(len(pick), k + rng.randint(0, 4))))
        if rng.random() < 0.002:
            specs = (TOO_BIG,)
        hours = rng.choice([1, 2, 4, 8, 12, 24, 48, 72])
        duration = timedelta(minutes=max(30, int(hours * 60 * rng.uniform(0.5, 1.0))))
        queue.append(
            QueuedJob(
                job_id=job_id,
                project_id=project,
                priority=rng.choices([0, 1, 2, 5], [70, 15, 10, 5])[0],
                queued_at=NOW - timedelta(seconds=rng.randint(0, 7 * 86_400)),
                node_count=k,
                specs=specs,
                node_names=node_names,
                pool=pool,
                driver_version=driver,
                duration=duration,
            )
        )
    return queue


# The heterogeneous shape: nodes bought over years from several vendors, so about 200
# groups of distinct capacity and labels; 20 specs, some naming a device model; three
# queued jobs in ten gangs of 2 to 32 nodes.
MODELS = {"mlu": ["MLU370-X8", "MLU590", None], "gpu": ["A800", "H800", "L40S"], "none": [None]}
DRIVERS = {"mlu": ["5.10", "6.2", "6.4"], "gpu": ["535", "550", "560"], "none": [None]}
HET_POOLS = ["mlu-shared", "gpu-shared", "mlu-team-a", "gpu-team-b", "mixed-c", None]


def heterogeneous_specs(rng: random.Random) -> list[SpecRequest]:
    specs = []
    for spec_id in range(1, 21):
        dtype = rng.choices(["mlu", "gpu", "none"], [6, 3, 1])[0]
        devices = 0 if dtype == "none" else rng.choice([1, 2, 4, 8, 8])
        per = max(devices, 1)
        model = rng.choice(MODELS[dtype]) if rng.random() < 0.3 else None
        specs.append(
            SpecRequest(
                spec_id,
                per * rng.choice([4, 8, 12]) * 1000,
                per * rng.choice([32, 64, 96]) * GIB,
                dtype,
                devices,
                model,
            )
        )
    return specs


def build_heterogeneous_cluster(
    rng: random.Random, count: int = 1000, groups: int = 200
) -> tuple[list[NodeState], list[Pool]]:
    pools = [
        Pool("mlu-shared"),
        Pool("gpu-shared"),
        Pool("mlu-team-a", frozenset({1, 2})),
        Pool("gpu-team-b", frozenset({3})),
        Pool("mixed-c", frozenset({4, 5})),
    ]
    kinds: set[tuple] = set()
    while len(kinds) < groups:
        dtype = rng.choices(["mlu", "gpu", "none"], [6, 3, 1])[0]
        kinds.add(
            (
                rng.choice(HET_POOLS),
                rng.choice(DRIVERS[dtype]),
                dtype,
                rng.choice([32, 64, 96, 128, 192]) * 1000,
                rng.choice([256, 512, 768, 1024, 1536]) * GIB,
                0 if dtype == "none" else rng.choice([4, 8, 8, 16]),
                rng.choice(MODELS[dtype]),
            )
        )
    ordered = sorted(kinds, key=repr)
    weights = [rng.paretovariate(1.2) for _ in ordered]  # a few big groups, many small
    nodes = []
    for i in range(count):
        pool, driver, dtype, cpu, mem, devices, model = (
            ordered[i] if i < len(ordered) else rng.choices(ordered, weights)[0]
        )
        nodes.append(
            NodeState(
                f"{dtype}-{i:04d}",
                pool,
                driver,
                dtype,
                cpu,
                mem,
                devices,
                schedulable=rng.random() > 0.02,
                device_model=model,
            )
        )
    return nodes, pools


def build_heterogeneous(
    rng: random.Random, nodes_count: int = 1000, running_count: int = 2000, jobs: int = 10_000
) -> tuple[list[NodeState], list[Pool], list[RunningJob], list[QueuedJob]]:
    nodes, pools = build_heterogeneous_cluster(rng, nodes_count, min(200, max(3, nodes_count // 3)))
    specs = heterogeneous_specs(rng)
    by_type: dict[str, list[SpecRequest]] = {}
    for spec in specs:
        by_type.setdefault(spec.device_type, []).append(spec)
    # running jobs: first-fit on a sample of nodes, never over capacity
    free = {n.name: [n.cpu_millis, n.memory_bytes, n.devices] for n in nodes if n.schedulable}
    live = [n for n in nodes if n.schedulable]
    running = []
    tries = 0
    while len(running) < running_count and tries < running_count * 20:
        tries += 1
        spec = rng.choice(specs)
        fits = [
            n.name
            for n in rng.sample(live, min(30, len(live)))
            if n.device_type == spec.device_type
            and (not spec.device_model or spec.device_model == n.device_model)
            and free[n.name][0] >= spec.cpu_millis
            and free[n.name][1] >= spec.memory_bytes
            and free[n.name][2] >= spec.devices
        ]
        if not fits:
            continue
        names = fits[: rng.choice([1, 1, 1, 2, 4])]
        for name in names:
            f = free[name]
            f[0] -= spec.cpu_millis
            f[1] -= spec.memory_bytes
            f[2] -= spec.devices
        deadline = NOW + timedelta(minutes=rng.randint(5, 48 * 60))
        running.append(RunningJob(2_000_000 + len(running), spec, tuple(names), deadline))
    names_all = [n.name for n in nodes]
    queue = []
    for job_id in range(1, jobs + 1):
        gang = rng.random() < 0.3
        k = rng.choice([2, 2, 4, 4, 8, 16, 32]) if gang else 1
        dtype = rng.choices(["mlu", "gpu", "none"], [6, 3, 1])[0]
        options = by_type.get(dtype) or specs
        chosen = rng.sample(options, min(len(options), rng.choice([1, 1, 2, 3])))
        pool = driver = None
        node_names: tuple[str, ...] = ()
        project = rng.randint(1, 6)
        if rng.random() < 0.2:
            kind = rng.choice(["pool", "driver", "names"])
            if kind == "pool":
                pool = rng.choice(HET_POOLS[:5])
                project = {"mlu-team-a": 1, "gpu-team-b": 3, "mixed-c": 4}.get(pool, project)
            elif kind == "driver":
                driver = rng.choice(DRIVERS[chosen[0].device_type])
            else:
                node_names = tuple(
                    rng.sample(names_all, min(len(names_all), k + rng.randint(2, 40)))
                )
        hours = rng.choice([1, 2, 4, 8, 12, 24, 48, 72])
        queue.append(
            QueuedJob(
                job_id=job_id,
                project_id=project,
                priority=rng.choices([0, 1, 2, 5], [70, 15, 10, 5])[0],
                queued_at=NOW - timedelta(seconds=rng.randint(0, 7 * 86_400)),
                node_count=k,
                specs=tuple(chosen),
                node_names=node_names,
                pool=pool,
                driver_version=driver,
                duration=timedelta(minutes=max(30, int(hours * 60 * rng.uniform(0.5, 1.0)))),
            )
        )
    return nodes, pools, running, queue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--running", type=int, default=2_000)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one plan")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    nodes, pools = build_cluster(rng)
    running = build_running(rng, nodes, args.running)
    queue = build_queue(rng, nodes, args.jobs)

    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        plan(nodes, pools, running, queue, NOW)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)

    walls, cpus = [], []
    result = None
    for _ in range(args.runs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = plan(nodes, pools, running, queue, NOW)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    assert result is not None
    planned = sum(1 for d in result.values() if d.start is not None)
    last = max(d.start for d in result.values() if d.start is not None)

    # predict() costs one plan of the jobs ahead of the draft: few for a top-priority
    # draft, the whole queue for a bottom-priority one. A Forecast plans once and then
    # answers each draft with one search.
    started = time.perf_counter()
    forecast = Forecast(nodes, pools, running, queue, NOW)
    forecast_seconds = time.perf_counter() - started
    predict_seconds, forecast_ms = {}, {}
    for name, priority in (
        ("top", max(j.priority for j in queue)),
        ("bottom", min(j.priority for j in queue)),
    ):
        draft = replace(queue[0], job_id=len(queue) + 1, priority=priority, queued_at=NOW)
        runs = []
        for _ in range(args.runs):
            started = time.perf_counter()
            exact = predict(nodes, pools, running, queue, draft, NOW)
            runs.append(time.perf_counter() - started)
        predict_seconds[name] = statistics.median(runs)
        runs = []
        for _ in range(20):
            started = time.perf_counter()
            assert forecast.predict(draft) == exact
            runs.append(time.perf_counter() - started)
        forecast_ms[name] = statistics.median(runs) * 1000

    het_nodes, het_pools, het_running, het_queue = build_heterogeneous(random.Random(11))
    het_cpus = []
    for _ in range(3):
        cpu = time.process_time()
        het = plan(het_nodes, het_pools, het_running, het_queue, NOW)
        het_cpus.append(time.process_time() - cpu)

    print(f"nodes: {len(nodes)}  running: {len(running)}  queued: {len(queue)}")
    print(f"plan_seconds: {statistics.median(walls):.3f} s")
    print(f"plan_seconds_min: {min(walls):.3f} s")
    print(f"plan_cpu_seconds: {statistics.median(cpus):.3f} s")
    print(f"plan_cpu_seconds_uniform: {statistics.median(cpus[:3]):.3f} s")
    labels = ("pool", "driver_version", "device_type", "device_model")
    capacity = ("cpu_millis", "memory_bytes", "devices")
    groups = {tuple(getattr(n, name) for name in labels + capacity) for n in het_nodes}
    print(f"heterogeneous_node_groups: {len(groups)} groups")
    print(f"plan_cpu_seconds_heterogeneous: {statistics.median(het_cpus):.3f} s")
    print(f"jobs_planned_heterogeneous: {sum(1 for d in het.values() if d.start is not None)}")
    print(f"jobs_planned: {planned}")
    print(f"jobs_starting_now: {len(result.starts_now(NOW))}")
    print(f"jobs_never: {len(result) - planned}")
    print(f"plan_horizon_hours: {(last - NOW).total_seconds() / 3600:.1f}")
    print(f"predict_top_priority_seconds: {predict_seconds['top']:.3f} s")
    print(f"predict_bottom_priority_seconds: {predict_seconds['bottom']:.3f} s")
    print(f"forecast_build_seconds: {forecast_seconds:.3f} s")
    print(f"forecast_predict_top_priority_ms: {forecast_ms['top']:.1f} ms")
    print(f"forecast_predict_bottom_priority_ms: {forecast_ms['bottom']:.1f} ms")


if __name__ == "__main__":
    main()
