"""One observe cycle of the kubernetes backend over 1,000 RUNNING jobs, against kmock.

    python benchmarks/observe.py [--jobs 1000] [--nodes-per-job 1]

kmock (a real HTTP server emulating the Kubernetes API) runs in a thread; it
is filled with one Indexed Job per platform job, built by the backend's own
manifests, and a running pod per worker. Then the backend observes every job
once. Prints the API calls of that cycle (goal: at most 3, whatever the number
of jobs) and its wall time, each on its own line.
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


def fill(server: KubeServer, jobs: int, nodes_per_job: int) -> None:
    for job_id in range(1, jobs + 1):
        nodes = tuple(f"node-{(job_id * nodes_per_job + n) % 997}" for n in range(nodes_per_job))
        placement = Placement(1, 8000, 32768, "mlu", 8, nodes)
        request = LaunchRequest(job_id, placement, {"job_id": job_id}, "token")
        name = manifests.workload_name(job_id)
        body = manifests.job(request, CONFIG, "bench")
        body["metadata"]["uid"] = f"uid-{job_id}"
        body["spec"]["suspend"] = False
        server.put("batch/v1/jobs", name, body)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--nodes-per-job", type=int, default=1)
    args = parser.parse_args()
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # one line per request

    server = KubeServer()
    try:
        fill(server, args.jobs, args.nodes_per_job)
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
    running = sum(state.phase == Phase.RUNNING for state in states.values())
    assert running == args.jobs, f"only {running} of {args.jobs} jobs observed as running"
    print(f"jobs: {args.jobs} running, {args.jobs * args.nodes_per_job} pods")
    print(f"observe_api_calls: {calls} calls")
    print(f"observe_seconds: {seconds:.3f} s")


if __name__ == "__main__":
    main()
