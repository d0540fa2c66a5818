"""The kubernetes backend against kmock, a real HTTP server emulating the API."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from scheduler import inventory
from scheduler.executors import get_executor, manifests
from scheduler.executors.base import ExecutorError, LaunchRequest, Phase
from scheduler.models import Node
from tests.scheduler.conftest import NAMESPACE, placement

JOBS = "batch/v1/jobs"


def request(job_id: int = 7, nodes=("node-a",), token: str = "s3cret", **fields) -> LaunchRequest:
    return LaunchRequest(
        job_id=job_id,
        placement=placement(nodes=nodes),
        trainer_spec={"job_id": job_id, "report": {"url": "http://x/report", "token": token}},
        report_token=token,
        **fields,
    )


def pod(job_id: int, rank: int, phase: str = "Running", **status) -> dict:
    name = manifests.workload_name(job_id)
    return {
        "metadata": {
            "name": f"{name}-{rank}-abcde",
            "labels": manifests.labels(job_id),
            "annotations": {manifests.COMPLETION_INDEX_ANNOTATION: str(rank)},
        },
        "spec": {"nodeName": f"node-{rank}"},
        "status": {"phase": phase, **status},
    }


def ago(seconds: int) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def test_launch_creates_the_job_configmap_and_secret_and_resumes_the_job(kube):
    get_executor().launch(request(pool_taint="pool=a100:NoSchedule"))

    name = "jingtiao-job-7"
    job = kube.stored(JOBS)[name]
    assert job["spec"]["suspend"] is False
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["backoffLimit"] == 0
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["tolerations"] == [
        {"key": "pool", "operator": "Equal", "value": "a100", "effect": "NoSchedule"}
    ]
    limits = pod_spec["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "4000m", "memory": "8192Mi", "cambricon.com/mlu": "2"}
    spec = json.loads(kube.stored("v1/configmaps")[name]["data"]["spec.json"])
    assert "token" not in spec["report"]  # the secret is not in the ConfigMap
    assert kube.stored("v1/secrets")[name]["stringData"] == {"report-token": "s3cret"}
    assert name not in kube.stored("v1/services")  # one node: no headless service


def test_a_multi_node_launch_adds_a_headless_service_for_rank_zero(kube):
    get_executor().launch(request(nodes=("node-a", "node-b")))

    name = "jingtiao-job-7"
    service = kube.stored("v1/services")[name]
    assert service["spec"]["clusterIP"] == "None"
    job = kube.stored(JOBS)[name]
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 2
    env = {
        e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["MASTER_ADDR"] == f"{name}-0.{name}" and env["NNODES"] == "2"
    assert job["spec"]["template"]["spec"]["subdomain"] == name
    # stored as sent: the API server keeps the ranks of the gang on distinct nodes
    anti = job["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    [rule] = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert rule["topologyKey"] == "kubernetes.io/hostname"


def test_a_retried_launch_after_a_500_creates_one_workload(kube):
    kube.fail_next("POST", "/jobs")
    executor = get_executor()

    with pytest.raises(ExecutorError) as failure:
        executor.launch(request())
    assert failure.value.transient
    executor.launch(request())

    assert list(kube.stored(JOBS)) == ["jingtiao-job-7"]
    assert len(kube.requests("POST", "/jobs")) == 2
    assert kube.stored(JOBS)["jingtiao-job-7"]["spec"]["suspend"] is False


def test_a_retried_launch_after_a_timeout_creates_one_of_each_object(kube):
    kube.fail_next("POST", "/configmaps", sleep=2)
    executor = get_executor()

    with pytest.raises(ExecutorError) as failure:
        executor.launch(request())
    assert failure.value.transient
    executor.launch(request())

    assert list(kube.stored("v1/configmaps")) == ["jingtiao-job-7"]
    assert list(kube.stored("v1/secrets")) == ["jingtiao-job-7"]
    assert list(kube.stored(JOBS)) == ["jingtiao-job-7"]


def test_a_launch_that_finds_an_earlier_launchs_job_clears_it_first(kube):
    executor = get_executor()
    executor.launch(request(token="first"))

    with pytest.raises(ExecutorError, match="earlier launch"):
        executor.launch(request(token="second"))
    executor.launch(request(token="second"))

    assert kube.stored("v1/secrets")["jingtiao-job-7"]["stringData"]["report-token"] == "second"


def test_a_rejected_manifest_is_a_permanent_error(kube):
    kube.fail_next("POST", "/jobs", status=422)

    with pytest.raises(ExecutorError) as failure:
        get_executor().launch(request())

    assert not failure.value.transient


def test_observe_lists_jobs_and_pods_once_whatever_the_number_of_jobs(kube):
    executor = get_executor()
    for job_id in range(1, 6):
        executor.launch(request(job_id))
        kube.put("v1/pods", f"p{job_id}", pod(job_id, 0))
    before = len(kube.requests())

    states = executor.observe(range(1, 8))

    assert len(kube.requests()) - before == 2
    assert {job_id: s.phase for job_id, s in states.items()} == {
        **{job_id: Phase.RUNNING for job_id in range(1, 6)},
        6: Phase.MISSING,
        7: Phase.MISSING,
    }


@pytest.mark.parametrize(
    ("pod_status", "phase", "words"),
    [
        ({"phase": "Pending"}, Phase.PENDING, ""),
        ({"phase": "Running"}, Phase.RUNNING, ""),
        (
            {
                "phase": "Failed",
                "containerStatuses": [
                    {
                        "name": "trainer",
                        "state": {"terminated": {"exitCode": 2, "message": "ValueError: bad data"}},
                    }
                ],
            },
            Phase.FAILED,
            "exited with code 2: ValueError: bad data",
        ),
        (
            {
                "phase": "Failed",
                "containerStatuses": [
                    {
                        "name": "trainer",
                        "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                    }
                ],
            },
            Phase.FAILED,
            "OOMKilled",
        ),
        (
            {"phase": "Failed", "reason": "Evicted", "message": "The node was low on memory."},
            Phase.LOST,
            "evicted: The node was low on memory.",
        ),
        (
            {  # preempted by the scheduler: killed (137), but through no fault of the job
                "phase": "Failed",
                "conditions": [
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "PreemptionByScheduler",
                        "message": "Preempted in order to admit critical pod",
                    }
                ],
                "containerStatuses": [
                    {"name": "trainer", "state": {"terminated": {"exitCode": 137}}}
                ],
            },
            Phase.LOST,
            "ended by the cluster (PreemptionByScheduler): Preempted in order to admit",
        ),
        (
            {
                "phase": "Unknown",
                "conditions": [{"type": "Ready", "lastTransitionTime": "2026-11-30T10:00:00Z"}],
            },
            Phase.LOST,
            "worker 0 is lost: its node node-0 stopped answering",
        ),
        (
            {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": "trainer",
                        "state": {
                            "waiting": {"reason": "ImagePullBackOff", "message": "not found"}
                        },
                    }
                ],
            },
            Phase.FAILED,
            "image pull error (ImagePullBackOff): not found",
        ),
    ],
)
def test_observe_maps_the_pod_status_to_a_phase_with_words(kube, pod_status, phase, words):
    executor = get_executor()
    executor.launch(request())
    kube.put("v1/pods", "p", {**pod(7, 0), "status": pod_status})

    state = executor.observe([7])[7]

    assert state.phase == phase
    assert words in state.reason
    assert state.workers[0]["node"] == "node-0"


def test_observe_follows_a_job_from_pending_to_running_to_succeeded(kube):
    executor = get_executor()
    executor.launch(request(nodes=("node-a", "node-b")))
    kube.put("v1/pods", "p0", pod(7, 0, "Pending"))
    assert executor.observe([7])[7].phase == Phase.PENDING

    kube.put("v1/pods", "p0", pod(7, 0, "Running"))
    kube.put("v1/pods", "p1", pod(7, 1, "Running"))
    assert executor.observe([7])[7].phase == Phase.RUNNING

    kube.put("v1/pods", "p0", pod(7, 0, "Succeeded"))
    kube.put("v1/pods", "p1", pod(7, 1, "Succeeded"))
    kube.emulator.objects[JOBS, NAMESPACE, "jingtiao-job-7"].patch(
        {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    )
    assert executor.observe([7])[7].phase == Phase.SUCCEEDED


def test_observe_says_since_when_pods_are_unschedulable(kube):
    executor = get_executor()
    executor.launch(request())
    since = ago(300)
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient cambricon.com/mlu.",
        "lastTransitionTime": since,
    }
    kube.put("v1/pods", "p0", pod(7, 0, "Pending", conditions=[condition]))

    state = executor.observe([7])[7]

    assert state.phase == Phase.UNSCHEDULABLE
    assert "Insufficient cambricon.com/mlu" in state.reason
    assert state.since == datetime.fromisoformat(since.replace("Z", "+00:00"))


def test_stop_removes_the_job_service_configmap_and_secret_and_can_repeat(kube):
    executor = get_executor()
    executor.launch(request(nodes=("node-a", "node-b")))

    executor.stop(7)
    executor.stop(7)

    for resource in (JOBS, "v1/services", "v1/configmaps", "v1/secrets"):
        assert kube.stored(resource) == {}, resource
    [delete] = [r for r in kube.requests("DELETE", "/jobs/jingtiao-job-7")][:1]
    assert delete.data["propagationPolicy"] == "Foreground"


def test_managed_job_ids_are_the_labelled_jobs(kube):
    executor = get_executor()
    executor.launch(request(3))
    executor.launch(request(4))
    kube.put(JOBS, "someone-elses", {"metadata": {"name": "someone-elses", "labels": {}}})

    assert executor.managed_job_ids() == {3, 4}


def test_logs_come_per_pod_and_resume_after_the_last_line(kube):
    executor = get_executor()
    executor.launch(request())
    kube.put("v1/pods", "p0", pod(7, 0, "Running"))
    first, second = ago(20), ago(10)
    kube.react("GET", "/log", f"{first} loading data\n{second} step 1 loss 2.5\n".encode())

    [chunk] = executor.logs(7)
    [again] = executor.logs(7, chunk.next_since)

    assert chunk.text == "loading data\nstep 1 loss 2.5\n" and not chunk.complete
    assert again.text == ""
    assert kube.requests("GET", "/log")[-1].params["sinceSeconds"]


def test_events_come_by_involved_object(kube):
    executor = get_executor()
    executor.launch(request())
    kube.put("v1/pods", "jingtiao-job-7-0-abcde", pod(7, 0, "Pending"))
    for name, involved, reason in [
        ("e1", "jingtiao-job-7-0-abcde", "FailedScheduling"),
        ("e2", "jingtiao-job-7", "SuccessfulCreate"),
        ("e3", "another-pod", "Pulled"),
    ]:
        kube.put(
            "v1/events",
            name,
            {
                "involvedObject": {"name": involved},
                "reason": reason,
                "type": "Normal",
                "message": reason,
                "lastTimestamp": ago(5 if name == "e1" else 50),
            },
        )

    events = executor.events(7)

    assert [(e.reason, e.worker) for e in events] == [
        ("SuccessfulCreate", None),
        ("FailedScheduling", 0),
    ]
    selectors = [r.params.get("fieldSelector") for r in kube.requests("GET", "/events")]
    assert "involvedObject.name=jingtiao-job-7" in selectors


def test_nodes_report_allocatable_devices_driver_and_pool(kube, settings):
    kube.put(
        "v1/nodes",
        "mlu-01",
        {
            "metadata": {
                "name": "mlu-01",
                "labels": {"DriverVersion": "5.10.22", "jingtiao.io/pool": "train"},
            },
            "spec": {"unschedulable": True},
            "status": {
                "allocatable": {"cpu": "63500m", "memory": "257Gi", "cambricon.com/mlu": "8"}
            },
        },
        namespace=None,
    )

    [node] = get_executor().nodes()

    assert (node.name, node.cpu_millis, node.memory_mib) == ("mlu-01", 63500, 257 * 1024)
    assert (node.device_type, node.device_count) == ("mlu", 8)
    assert (node.driver_version, node.pool, node.schedulable) == ("5.10.22", "train", False)


@pytest.mark.django_db
def test_nodes_carry_cambricons_model_label_and_per_model_resource(kube):
    """Issue 13, item 6: the device plugin's DriverVersion and Model labels, and with its
    device types on, a resource named after the model."""
    labelled = {"DriverVersion": "5.10.29", "Model": "MLU370-X8"}
    typed = {"cpu": "64", "memory": "256Gi", "cambricon.com/mlu370": "8"}
    for name, labels in (("mlu-a", labelled), ("mlu-b", {})):
        body = {"metadata": {"name": name, "labels": labels}, "status": {"allocatable": typed}}
        kube.put("v1/nodes", name, body, namespace=None)

    nodes = {node.name: node for node in get_executor().nodes()}

    a, b = nodes["mlu-a"], nodes["mlu-b"]
    assert (a.device_type, a.device_count, a.device_model) == ("mlu", 8, "MLU370-X8")
    assert a.driver_version == "5.10.29"
    assert (b.device_type, b.device_count, b.device_model) == ("mlu", 8, "MLU370")
    inventory.sync_nodes(list(nodes.values()))
    assert Node.objects.get(name="mlu-a").device_model == "MLU370-X8"


def test_node_sync_counts_what_other_tenants_pods_hold_on_each_node(kube):
    """Issue 13, item 5: the planner must not plan capacity another team's pods use."""
    allocatable = {"cpu": "64", "memory": "256Gi", "cambricon.com/mlu": "8"}
    for name in ("mlu-01", "mlu-02"):
        kube.put(
            "v1/nodes",
            name,
            {"metadata": {"name": name}, "status": {"allocatable": allocatable}},
            namespace=None,
        )

    def foreign(name, node, phase="Running", namespace="team-b", **spec):
        body = {
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": "theirs"}},
            "spec": {"nodeName": node, **spec},
            "status": {"phase": phase},
        }
        kube.put("v1/pods", name, body, namespace=namespace)

    trainer = {"requests": {"cpu": "8", "memory": "32Gi", "cambricon.com/mlu": "2"}}
    foreign("infer", "mlu-01", containers=[{"name": "a", "resources": trainer}])
    foreign(  # limits only: the request defaults to the limit; an init container's peak
        "batch",
        "mlu-01",
        namespace="team-c",
        containers=[{"name": "a", "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}}}],
        initContainers=[{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
    )
    foreign("done", "mlu-02", phase="Succeeded", containers=[{"name": "a", "resources": trainer}])
    foreign("pending", "", containers=[{"name": "a", "resources": trainer}])  # not placed yet
    ours = pod(9, 0)  # the platform's own job: the planner counts it itself
    ours["spec"] = {"nodeName": "mlu-02", "containers": [{"name": "t", "resources": trainer}]}
    kube.put("v1/pods", "ours", ours)
    before = len(kube.requests())

    nodes = {node.name: node for node in get_executor().nodes()}

    assert len(kube.requests()) - before == 2  # nodes, then pods: whatever their number
    one, two = nodes["mlu-01"], nodes["mlu-02"]
    assert (one.cpu_millis, one.memory_mib, one.device_count) == (54_000, 223 * 1024, 6)
    assert (two.cpu_millis, two.memory_mib, two.device_count) == (64_000, 256 * 1024, 8)


def test_a_pods_requests_count_as_the_scheduler_counts_them():
    from scheduler.executors.observing import pod_requests

    def container(cpu, **extra):
        return {"name": "c", "resources": {"requests": {"cpu": cpu}}, **extra}

    pod_ = {
        "spec": {
            "containers": [container("1"), container("250m")],
            "initContainers": [container("4"), container("500m", restartPolicy="Always")],
            "overhead": {"cpu": "100m"},
        }
    }
    # max(1 + 0.25 + 0.5 sidecar, 4 init) + 0.1 overhead
    assert pod_requests(pod_)["cpu"] == Decimal("4.1")


def _two_pods_with_logs(kube) -> None:
    for rank in (0, 1):
        kube.put("v1/pods", f"p{rank}", pod(7, rank, "Succeeded"))
        kube.react("GET", f"jingtiao-job-7-{rank}-abcde/log", f"rank {rank} says hello\n".encode())


def test_stop_keeps_each_workers_log_and_the_tab_reads_it_once_the_pods_are_gone(kube):
    from finetune.storage import job_dir

    executor = get_executor()
    executor.launch(request())
    _two_pods_with_logs(kube)

    executor.stop(7)
    executor.stop(7)  # a repeat copies nothing again

    folder = job_dir(7)
    assert (folder / "worker-1.log").read_text() == "rank 1 says hello\n"
    assert json.loads((folder / "logs-archived.json").read_text())["0"]["phase"] == "Succeeded"
    assert len(kube.requests("GET", "/log")) == 2
    assert kube.stored(JOBS) == {}
    for name in ("p0", "p1"):
        del kube.emulator.objects["v1/pods", NAMESPACE, name]
    reads = len(kube.requests("GET", "/log"))

    chunks = executor.logs(7)
    tail = executor.logs(7, tail=True)

    assert [(c.worker, c.text, c.complete) for c in chunks] == [
        (0, "rank 0 says hello\n", True),
        (1, "rank 1 says hello\n", True),
    ]
    assert [c.text for c in tail] == [c.text for c in chunks]
    assert b"".join(executor.log_blocks(7, 1)) == b"rank 1 says hello\n"
    with pytest.raises(LookupError):
        executor.log_blocks(7, 2)
    assert len(kube.requests("GET", "/log")) == reads  # all from the job's folder


def test_a_live_cursor_meets_the_archive_at_its_end(kube):
    executor = get_executor()
    executor.launch(request())
    _two_pods_with_logs(kube)
    live_cursor = json.dumps({"0": ago(1), "1": ago(1)})

    executor.stop(7)
    [first, second] = executor.logs(7, live_cursor)

    assert first.text == second.text == "" and first.complete and second.complete


def test_a_deleted_jobs_workload_goes_without_its_logs(kube):
    executor = get_executor()
    executor.launch(request())
    _two_pods_with_logs(kube)

    executor.stop(7, keep_logs=False)

    assert kube.requests("GET", "/log") == [] and kube.stored(JOBS) == {}


def test_a_log_that_cannot_be_read_now_keeps_the_workload_for_a_retry(kube):
    from finetune.storage import job_dir

    executor = get_executor()
    executor.launch(request())
    kube.put("v1/pods", "p0", pod(7, 0, "Failed"))
    kube.fail_next("GET", "/log", status=503)

    with pytest.raises(ExecutorError) as failed:
        executor.stop(7)

    assert failed.value.transient
    assert "jingtiao-job-7" in kube.stored(JOBS)  # not torn down: its log is still wanted
    assert not (job_dir(7) / "logs-archived.json").exists()
    assert not (job_dir(7) / "worker-0.log.part").exists()


def test_a_log_refused_for_good_does_not_keep_the_pods(kube):
    executor = get_executor()
    executor.launch(request())
    kube.put("v1/pods", "p0", pod(7, 0, "Failed"))
    kube.fail_next("GET", "/log", status=403)

    executor.stop(7)

    assert kube.stored(JOBS) == {}


def test_a_running_workers_log_downloads_from_its_pod_and_the_tab_starts_at_its_tail(kube):
    executor = get_executor()
    executor.launch(request())
    kube.put("v1/pods", "p0", pod(7, 0, "Running"))
    kube.react("GET", "/log", f"{ago(3)} step 9 loss 1.0\n".encode())

    [tail] = executor.logs(7, tail=True)
    downloaded = b"".join(executor.log_blocks(7, 0))

    assert tail.text == "step 9 loss 1.0\n"
    first_read = kube.requests("GET", "/log")[0]
    assert first_read.params["tailLines"] == "2000"
    assert b"step 9 loss 1.0" in downloaded
    with pytest.raises(LookupError):
        executor.log_blocks(7, 3)


def test_a_gangs_events_come_for_every_pod_with_a_bounded_number_of_calls_at_once(
    kube, monkeypatch
):
    from scheduler.executors import kubernetes as backend

    executor = get_executor()
    executor.launch(request())
    for rank in range(20):
        kube.put("v1/pods", f"jingtiao-job-7-{rank}-abcde", pod(7, rank, "Running"))
        kube.put(
            "v1/events",
            f"e{rank}",
            {
                "involvedObject": {"name": f"jingtiao-job-7-{rank}-abcde"},
                "reason": "Started",
                "type": "Normal",
                "message": f"rank {rank} started",
                "lastTimestamp": ago(60 - rank),
            },
        )
    at_once, most = 0, 0
    lock = threading.Lock()
    listing = executor.core.list_namespaced_event

    def counted(*args, **kwargs):
        nonlocal at_once, most
        with lock:
            at_once += 1
            most = max(most, at_once)
        try:
            time.sleep(0.05)
            return listing(*args, **kwargs)
        finally:
            with lock:
                at_once -= 1

    monkeypatch.setattr(executor.core, "list_namespaced_event", counted)

    events = executor.events(7)

    assert [e.worker for e in events] == list(range(20))  # in time order, one per pod
    assert 1 < most <= backend.EVENT_CALLS
