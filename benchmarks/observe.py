"""One observe cycle of the kubernetes backend over 1,000 jobs, against kmock.

    python benchmarks/observe.py [--jobs 1000] [--nodes-per-job 1] [--admission both]

kmock (a real HTTP server emulating the Kubernetes API) runs in a thread; it
is filled with one Indexed Job per platform job, built by the backend's own
manifests, and a running pod per worker. Then the backend observes every job
once. Prints the API calls of that cycle (goal: at most 3, whatever the number
of jobs) and its wall time, each on its own line.

With ``--admission kueue`` (and by default, after the planner's mode) the Jobs are
labelled for Kueue and each has its Workload: half of them admitted and running, half
suspended, waiting for quota. Prints ``kueue_observe_api_calls`` (goal: at most 3) and
``kueue_observe_seconds``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from kubernetes import client  # noqa: E402

from scheduler.executors import manifests  # noqa: E402
from scheduler.executors.base import LaunchRequest, Phase, Placement  # noqa: E402
from scheduler.executors.kubernetes import KubernetesExecutor  # noqa: E402
from tests.scheduler.conftest import NAMESPACE, KubeServer  # noqa: E402

CONFIG = manifests.ManifestConfig(
    namespace=NAMESPACE,
    image="jingtiao-trainer:bench",
    data_pvc="jingtiao-data",
    data_root="/data",
    mlu_resource="cambricon.com/mlu",
    gpu_resource="nvidia.com/gpu",
)


WORKLOADS = "kueue.x-k8s.io/v1beta2/workloads"


def fill(server: KubeServer, jobs: int, nodes_per_job: int, kueue: bool = False) -> None:
    for job_id in range(1, jobs + 1):
        nodes = tuple(f"node-{(job_id * nodes_per_job + n) % 997}" for n in range(nodes_per_job))
        placement = Placement(1, 8000, 32768, "mlu", 8, nodes)
        labels = {"kueue_queue": "jingtiao", "kueue_priority_class": "jingtiao-normal"}
        request = LaunchRequest(
            job_id, placement, {"job_id": job_id}, "token", **(labels if kueue else {})
        )
        name = manifests.workload_name(job_id)
        body = manifests.job(request, CONFIG, "bench")
        body["metadata"]["uid"] = f"uid-{job_id}"
        admitted = not kueue or job_id % 2 == 0
        body["spec"]["suspend"] = not admitted
        server.put("batch/v1/jobs", name, body)
        if kueue:
            server.put(WORKLOADS, f"job-{name}-x", workload(job_id, name, admitted, body))
        if not admitted:
            continue
        for rank, node in enumerate(nodes):
            server.put(
                "v1/pods",
                f"{name}-{rank}-x",
                {
                    "metadata": {
                        "name": f"{name}-{rank}-x",
                        "labels": manifests.labels(job_id),
                        "annotations": {manifests.COMPLETION_INDEX_ANNOTATION: str(rank)},
                        "ownerReferences": [{"uid": f"uid-{job_id}", "kind": "Job"}],
                    },
                    "spec": {**body["spec"]["template"]["spec"], "nodeName": node},
                    "status": {
                        "phase": "Running",
                        "conditions": [{"type": "Ready", "status": "True"}],
                        "containerStatuses": [
                            {"name": "trainer", "ready": True, "state": {"running": {}}}
                        ],
                    },
                },
            )


def workload(job_id: int, name: str, admitted: bool, job: dict) -> dict:
    """The Workload Kueue keeps of the Job: admitted, or waiting for quota."""
    if admitted:
        conditions = [
            {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved"},
            {"type": "Admitted", "status": "True", "reason": "Admitted"},
        ]
    else:
        message = "couldn't assign flavors to pod set main: insufficient quota for "
        message += "cambricon.com/mlu in flavor mlu370-x8, 8 more needed"
        conditions = [
            {"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": message}
        ]
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "Workload",
        "metadata": {
            "name": f"job-{name}-x",
            "namespace": NAMESPACE,
            "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": f"uid-{job_id}"}
            ],
        },
        "spec": {
            "queueName": "jingtiao",
            "podSets": [{"name": "main", "count": 1, "template": job["spec"]["template"]}],
        },
        "status": {"conditions": conditions},
    }


def cycle(args, kueue: bool) -> tuple[int, float, dict]:
    """Fill kmock, then time one observe of every job: (API calls, seconds, states)."""
    settings.JINGTIAO_ADMISSION = "kueue" if kueue else "jingtiao"
    server = KubeServer()
    server.emulator.resources[WORKLOADS] = {}
    try:
        fill(server, args.jobs, args.nodes_per_job, kueue)
        configuration = client.Configuration()
        configuration.host = server.url
        configuration.retries = 0
        executor = KubernetesExecutor(client.ApiClient(configuration), CONFIG)
        before = len(server.requests())
        started = time.perf_counter()
        states = executor.observe(range(1, args.jobs + 1))
        seconds = time.perf_counter() - started
        calls = len(server.requests()) - before
    finally:
        server.close()
    return calls, seconds, states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--nodes-per-job", type=int, default=1)
    parser.add_argument("--admission", choices=("jingtiao", "kueue", "both"), default="both")
    args = parser.parse_args()
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # one line per request

    if args.admission in ("jingtiao", "both"):
        calls, seconds, states = cycle(args, kueue=False)
        running = sum(state.phase == Phase.RUNNING for state in states.values())
        assert running == args.jobs, f"only {running} of {args.jobs} jobs observed as running"
        print(f"jobs: {args.jobs} running, {args.jobs * args.nodes_per_job} pods")
        print(f"observe_api_calls: {calls} calls")
        print(f"observe_seconds: {seconds:.3f} s")
    if args.admission in ("kueue", "both"):
        calls, seconds, states = cycle(args, kueue=True)
        running = sum(state.phase == Phase.RUNNING for state in states.values())
        waiting = sum(state.phase == Phase.WAITING for state in states.values())
        assert running == args.jobs // 2 and waiting == args.jobs - running, (running, waiting)
        print(f"kueue_jobs: {running} admitted and running, {waiting} waiting for quota")
        print(f"kueue_observe_api_calls: {calls} calls")
        print(f"kueue_observe_seconds: {seconds:.3f} s")


if __name__ == "__main__":
    main()
