"""Kueue admission (JINGTIAO_ADMISSION=kueue) against kmock, the test playing Kueue's
controller: it makes the Workload of each labelled Job, admits it (unsuspends the Job,
its pods run), evicts it, finishes it and answers the visibility API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from django.urls import reverse
from django.utils import translation

from finetune import states
from finetune.models import Job, JobEvent, JobStatus, Priority
from finetune.storage import resolve
from scheduler import kueue, prediction
from scheduler.executors import get_executor, manifests, observing
from scheduler.executors.base import Phase
from scheduler.kueue_quotas import QuotaNode, quota_nodes, sync_queues
from scheduler.models import KueueQueue, Node
from scheduler.planner import NodeState
from tests import factories
from tests.scheduler.conftest import NAMESPACE
from tests.scheduler.test_executor_manifests import KUBERNETES_VERSION

JOBS = "batch/v1/jobs"
PODS = "v1/pods"
KUEUE = "kueue.x-k8s.io/v1beta2"
WORKLOADS = f"{KUEUE}/workloads"
SCHEMAS = Path(__file__).resolve().parent / "kueue_schemas"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "kueue"
GIB = 1 << 30


def schema_of(kind: str) -> dict:
    return json.loads((SCHEMAS / f"{kind.lower()}.json").read_text())


def valid_kueue_object(obj: dict) -> None:
    jsonschema.validate(obj, schema_of(obj["kind"]))


def stamp(seconds_ago: int = 0) -> str:
    moment = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def condition(kind: str, status: str, reason: str, message: str = "") -> dict:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": stamp(),
    }


INSUFFICIENT = (
    "couldn't assign flavors to pod set main: insufficient quota for cambricon.com/mlu in "
    "flavor mlu370-x8, request > maximum capacity (16 > 8)"
)


class FakeKueue:
    """Kueue's controller, as far as the platform sees it."""

    def __init__(self, kube) -> None:
        self.kube = kube
        for plural in ("workloads", "localqueues", "clusterqueues", "resourceflavors"):
            kube.emulator.resources[f"{KUEUE}/{plural}"] = {}
        # the order Kueue keeps its pending workloads in: job ids, first first
        self.order: list[int] | None = None
        kube.react("GET", "/pendingworkloads", self._pending)

    def _job(self, job_id: int) -> dict:
        return self.kube.stored(JOBS)[manifests.workload_name(job_id)]

    def _patch_job(self, job_id: int, patch: dict) -> None:
        self.kube.emulator.objects[JOBS, NAMESPACE, manifests.workload_name(job_id)].patch(patch)

    def _workload_name(self, job_id: int) -> str:
        return f"job-{manifests.workload_name(job_id)}-1a2b3"

    def workload(self, job_id: int) -> dict | None:
        return self.kube.stored(WORKLOADS).get(self._workload_name(job_id))

    def _patch_workload(self, job_id: int, patch: dict) -> None:
        self.kube.emulator.objects[WORKLOADS, NAMESPACE, self._workload_name(job_id)].patch(patch)

    def sync(self) -> None:
        """A Workload for every Job labelled with a queue that has none yet."""
        for name, job in self.kube.stored(JOBS).items():
            meta = job["metadata"]
            labels = meta.get("labels") or {}
            if manifests.KUEUE_QUEUE_LABEL not in labels:
                continue
            job_id = int(labels[manifests.JOB_ID_LABEL])
            uid = meta.get("uid") or f"uid-{name}"
            if not meta.get("uid"):  # the API server gives every object one
                self._patch_job(job_id, {"metadata": {"uid": uid}})
            if self.workload(job_id) is not None:
                continue
            priority_class = labels[manifests.KUEUE_PRIORITY_LABEL]
            body = {
                "apiVersion": KUEUE,
                "kind": "Workload",
                "metadata": {
                    "name": self._workload_name(job_id),
                    "namespace": NAMESPACE,
                    "creationTimestamp": stamp(),
                    "labels": {"kueue.x-k8s.io/job-uid": uid},
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "Job",
                            "name": name,
                            "uid": uid,
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": {
                    "queueName": labels[manifests.KUEUE_QUEUE_LABEL],
                    "priorityClassRef": {
                        "group": "kueue.x-k8s.io",
                        "kind": "WorkloadPriorityClass",
                        "name": priority_class,
                    },
                    "priority": 20,
                    "podSets": [
                        {
                            "name": "main",
                            "count": job["spec"]["completions"],
                            "template": job["spec"]["template"],
                        }
                    ],
                },
                "status": {
                    "conditions": [condition("QuotaReserved", "False", "Pending", INSUFFICIENT)]
                },
            }
            valid_kueue_object(body)
            self.kube.put(WORKLOADS, body["metadata"]["name"], body)

    def admit(
        self, job_id: int, nodes: tuple[str, ...] = ("mlu-0",), *, evicted_before: bool = False
    ) -> None:
        conditions = [
            condition("QuotaReserved", "True", "QuotaReserved"),
            condition("Admitted", "True", "Admitted"),
        ]
        if evicted_before:  # Kueue turns the eviction's condition off as it readmits
            conditions.append(condition("Evicted", "False", "QuotaReserved"))
        self._patch_workload(
            job_id,
            {
                "status": {
                    "conditions": conditions,
                    "admission": {
                        "clusterQueue": "jingtiao",
                        "podSetAssignments": [
                            {
                                "name": "main",
                                "flavors": {"cambricon.com/mlu": "mlu370-x8"},
                                "count": len(nodes),
                            }
                        ],
                    },
                }
            },
        )
        valid_kueue_object(self.workload(job_id))
        self._patch_job(job_id, {"spec": {"suspend": False}})
        for rank, node in enumerate(nodes):
            self.kube.put(PODS, f"jingtiao-job-{job_id}-{rank}", pod(job_id, rank, node))

    def evict(self, job_id: int) -> None:
        self._patch_workload(
            job_id,
            {
                "status": {
                    "conditions": [
                        condition(
                            "Evicted",
                            "True",
                            "Preempted",
                            "Preempted to accommodate a workload (UID: u-9) due to "
                            "prioritization in the ClusterQueue",
                        ),
                        condition("QuotaReserved", "False", "Preempted"),
                    ]
                }
            },
        )
        self._patch_job(job_id, {"spec": {"suspend": True}})
        for name in list(self.kube.stored(PODS)):
            if name.startswith(f"jingtiao-job-{job_id}-"):
                self.kube.emulator.objects[PODS, NAMESPACE, name].delete()

    def readmit(self, job_id: int) -> None:
        self.admit(job_id, evicted_before=True)

    def finish(self, job_id: int) -> None:
        for name in list(self.kube.stored(PODS)):
            if name.startswith(f"jingtiao-job-{job_id}-"):
                rank = int(name.rsplit("-", 1)[1])
                self.kube.put(PODS, name, pod(job_id, rank, "mlu-0", "Succeeded"))
        self._patch_job(
            job_id, {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
        )

    def _pending(self, request) -> dict:
        """The visibility API: a LocalQueue's pending workloads, with their places."""
        queue = str(request.url).split("/localqueues/")[1].split("/")[0]
        pending = []
        for workload in self.kube.stored(WORKLOADS).values():
            if (workload.get("status") or {}).get("admission"):
                continue  # admitted: not pending
            name, uid = observing.workload_owner(workload)
            pending.append((int(name.rsplit("-", 1)[1]), workload, uid))
        if self.order is not None:
            pending.sort(key=lambda item: self.order.index(item[0]))
        items = [
            {
                "metadata": {
                    "name": workload["metadata"]["name"],
                    "namespace": NAMESPACE,
                    "ownerReferences": workload["metadata"]["ownerReferences"],
                },
                "priority": workload["spec"]["priority"],
                "localQueueName": workload["spec"]["queueName"],
                "positionInClusterQueue": place,
                "positionInLocalQueue": place,
            }
            for place, (_job_id, workload, _uid) in enumerate(pending)
            if workload["spec"]["queueName"] == queue
        ]
        return {
            "kind": "PendingWorkloadsSummary",
            "apiVersion": "visibility.kueue.x-k8s.io/v1beta2",
            "metadata": {},
            "items": items,
        }


def pod(job_id: int, rank: int, node: str, phase: str = "Running") -> dict:
    return {
        "metadata": {
            "name": f"jingtiao-job-{job_id}-{rank}",
            "labels": manifests.labels(job_id),
            "annotations": {manifests.COMPLETION_INDEX_ANNOTATION: str(rank)},
        },
        "spec": {"nodeName": node},
        "status": {"phase": phase},
    }


@pytest.fixture
def fake_kueue(kube, settings) -> FakeKueue:
    settings.JINGTIAO_ADMISSION = "kueue"
    get_executor.cache_clear()
    return FakeKueue(kube)


def follow():
    return kueue.follow(get_executor(), on_ended=lambda job_id: None)


def patches_that_unsuspend(kube) -> list:
    return [
        r
        for r in kube.requests("PATCH", "/jobs/")
        if isinstance(r.data, dict) and (r.data.get("spec") or {}).get("suspend") is False
    ]


def test_a_job_is_submitted_suspended_admitted_by_kueue_runs_and_succeeds(
    fake_kueue, kube, project, alice
):
    job = factories.job(project, alice)

    assert kueue.run_pass() == [job.pk]

    stored = kube.stored(JOBS)[manifests.workload_name(job.pk)]
    assert stored["spec"]["suspend"] is True
    labels = stored["metadata"]["labels"]
    assert labels[manifests.KUEUE_QUEUE_LABEL] == "jingtiao"  # the default LocalQueue
    assert labels[manifests.KUEUE_PRIORITY_LABEL] == "jingtiao-normal"
    pod_spec = stored["spec"]["template"]["spec"]
    assert "affinity" not in pod_spec  # no nodes pinned: Kueue and the cluster choose
    kubernetes_validate.validate(stored, KUBERNETES_VERSION, strict=True)
    assert {f"jingtiao-job-{job.pk}"} <= set(kube.stored("v1/secrets"))
    assert kueue.run_pass() == []  # submitted once

    fake_kueue.sync()
    follow()
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    with translation.override("zh-hans"):
        said = kueue.waiting_reasons()[job.pk].render()
    assert "cambricon.com/mlu" in said and "mlu370-x8" in said and "quota" not in said

    fake_kueue.admit(job.pk, nodes=("mlu-3",))
    kube.emulator.objects[PODS, NAMESPACE, f"jingtiao-job-{job.pk}-0"].delete()
    # unsuspended, its pods not made yet: running, and given its grace from the admission
    assert follow() == {job.pk: JobStatus.RUNNING}
    assert follow() == {}
    assert manifests.workload_name(job.pk) in kube.stored(JOBS)
    kube.put(PODS, f"jingtiao-job-{job.pk}-0", pod(job.pk, 0, "mlu-3"))
    assert follow() == {}
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.started_at is not None
    assert [worker["node"] for worker in job.placement] == ["mlu-3"]
    assert job.spec_in_use_id == job.ordered_node_specs()[0].pk

    output = resolve(job.model_repo.location) / f"job-{job.pk}"
    output.mkdir(parents=True)
    (output / "manifest.json").write_text('{"algorithm": "sft_lora"}')
    fake_kueue.finish(job.pk)
    assert follow() == {job.pk: JobStatus.SUCCEEDED}
    assert patches_that_unsuspend(kube) == []  # only Kueue ever unsuspends


def test_an_evicted_job_goes_back_to_its_place_and_kueue_readmits_it(
    fake_kueue, kube, project, alice, settings
):
    settings.JINGTIAO_MAX_REQUEUES = 1
    job = factories.job(project, alice)
    kueue.run_pass()
    fake_kueue.sync()
    fake_kueue.admit(job.pk)
    follow()
    job.refresh_from_db()
    queued_at = job.queued_at

    for _round in range(3):  # more than JINGTIAO_MAX_REQUEUES: preemption is no fault
        fake_kueue.evict(job.pk)
        assert follow() == {job.pk: JobStatus.QUEUED}
        job.refresh_from_db()
        assert job.status == JobStatus.QUEUED and job.queued_at == queued_at
        event = job.events.filter(to_status=JobStatus.QUEUED).first()
        assert "Preempted" in event.message and "back in the queue" in event.message
        assert manifests.workload_name(job.pk) in kube.stored(JOBS)  # left for Kueue
        assert kueue.run_pass() == []  # not submitted again

        fake_kueue.readmit(job.pk)
        assert follow() == {job.pk: JobStatus.RUNNING}
    assert patches_that_unsuspend(kube) == []


def test_a_priority_changed_while_waiting_relabels_the_job(fake_kueue, kube, project, alice):
    job = factories.job(project, alice, priority=Priority.LOW)
    kueue.run_pass()
    name = manifests.workload_name(job.pk)
    assert kube.stored(JOBS)[name]["metadata"]["labels"][manifests.KUEUE_PRIORITY_LABEL] == (
        "jingtiao-low"
    )

    Job.objects.filter(pk=job.pk).update(priority=Priority.URGENT)
    kueue.run_pass()

    labels = kube.stored(JOBS)[name]["metadata"]["labels"]
    assert labels[manifests.KUEUE_PRIORITY_LABEL] == "jingtiao-urgent"
    assert labels[manifests.KUEUE_QUEUE_LABEL] == "jingtiao"


def test_a_project_of_its_own_queue_is_submitted_there(fake_kueue, kube, project, alice):
    project.kueue_queue = "team-vision"
    project.save()
    job = factories.job(project, alice)
    kueue.run_pass()
    labels = kube.stored(JOBS)[manifests.workload_name(job.pk)]["metadata"]["labels"]
    assert labels[manifests.KUEUE_QUEUE_LABEL] == "team-vision"


def test_stop_deletes_the_job_and_its_workload(fake_kueue, kube, project, alice):
    job = factories.job(project, alice)
    kueue.run_pass()
    fake_kueue.sync()
    assert fake_kueue.workload(job.pk) is not None

    states.transition(job, JobStatus.STOPPED)
    get_executor().stop(job.pk)

    assert manifests.workload_name(job.pk) not in kube.stored(JOBS)
    assert fake_kueue.workload(job.pk) is None
    for resource in ("v1/configmaps", "v1/secrets"):
        assert kube.stored(resource) == {}


def test_a_job_stopped_while_it_is_submitted_leaves_no_job(fake_kueue, kube, project, alice):
    job = factories.job(project, alice)
    executor = get_executor()
    launch = executor.launch

    def stopped_meanwhile(request):
        launch(request)
        Job.objects.filter(pk=job.pk).update(status=JobStatus.STOPPED)

    executor.launch = stopped_meanwhile
    try:
        assert kueue.run_pass() == []
    finally:
        del executor.launch
    assert kube.stored(JOBS) == {}
    assert not job.events.filter(kind=JobEvent.Kind.LAUNCH).exists()


def mlu_cluster(nodes: int = 4, quota: int = 16) -> None:
    """Nodes of 8 MLU370-X8 as the node sync leaves them, and the ClusterQueue of the
    default LocalQueue with a quota of `quota` MLUs, as the queue sync leaves it."""
    for i in range(nodes):
        Node.objects.create(
            name=f"mlu-{i}",
            device_type="mlu",
            device_count=8,
            cpu_millis=64_000,
            memory_mib=512 * 1024,
            labels={"Model": "MLU370-X8"},
            device_model="MLU370-X8",
        )
    KueueQueue.objects.create(
        name="jingtiao",
        local_queues=["jingtiao"],
        flavors=[
            {
                "name": "mlu370-x8",
                "node_labels": {"Model": "MLU370-X8"},
                "quotas": {"cpu": "1024", "memory": "8Ti", "cambricon.com/mlu": str(quota)},
            }
        ],
        synced_at=datetime.now(UTC),
    )


def test_the_list_shows_kueues_positions(fake_kueue, kube, project, alice, client):
    mlu_cluster(quota=1)  # one MLU, held by a running job: the three wait
    holder = factories.job(project, alice)
    states.transition(
        holder,
        JobStatus.RUNNING,
        changes={
            "placement": [{"rank": 0, "node": "mlu-0", "devices": []}],
            "spec_in_use": holder.ordered_node_specs()[0],
        },
    )
    jobs = [factories.job(project, alice) for _ in range(3)]
    kueue.run_pass()
    fake_kueue.sync()
    # Kueue's order is not the platform's (another team's workloads, fair sharing)
    fake_kueue.order = [jobs[2].pk, jobs[0].pk, jobs[1].pk]
    kueue.run_pass()

    forecasts = prediction.queue_forecasts([job.pk for job in jobs])
    assert [forecasts[job.pk].position for job in jobs] == [2, 3, 1]
    assert forecasts[jobs[0].pk].pool == "jingtiao"
    assert "Kueue" in forecasts[jobs[0].pk].message()
    client.force_login(alice)
    page = client.get(reverse("finetune:job_list")).content.decode()
    for job, place in zip(jobs, (2, 3, 1), strict=True):
        assert f"#{place} in queue" in page, job
    detail = client.get(reverse("finetune:job_detail", args=[jobs[2].pk])).content.decode()
    assert "position 1 in Kueue&#x27;s queue jingtiao" in detail


def test_observe_makes_three_list_calls_whatever_the_number_of_jobs(
    fake_kueue, kube, project, alice
):
    jobs = [factories.job(project, alice) for _ in range(12)]
    kueue.run_pass()
    fake_kueue.sync()
    for job in jobs[:5]:
        fake_kueue.admit(job.pk)
    before = len(kube.requests())

    follow()

    calls = kube.requests()[before:]
    assert len(calls) == 3, [str(call.url) for call in calls]
    assert {call.method for call in calls} == {"GET"}


# --- the quotas the prediction plans over ------------------------------------------


def node(name: str, devices: int = 8, device_type: str = "mlu", model: str = "MLU370-X8"):
    return NodeState(name, None, None, device_type, 64_000, 512 * GIB, devices, True, model)


def test_a_flavors_nodes_are_cut_to_its_quota():
    nodes = [QuotaNode(node(f"m{i}"), {"Model": "MLU370-X8"}) for i in range(4)]
    nodes.append(QuotaNode(node("g0", device_type="gpu", model="H100"), {"Model": "H100"}))
    flavors = [
        {
            "name": "mlu",
            "node_labels": {"Model": "MLU370-X8"},
            "quotas": {"cambricon.com/mlu": "20"},
        },
        {"name": "cpu-only", "node_labels": {}, "quotas": {"cpu": "16", "memory": "64Gi"}},
    ]

    found = quota_nodes("cq", flavors, nodes, {"cambricon.com/mlu"})

    assert [(n.name, n.devices) for n in found[:3]] == [("cq/m0", 8), ("cq/m1", 8), ("cq/m2", 4)]
    assert all(n.pool == "cq" for n in found)
    # the CPU flavor takes the nodes left (no device quota: no devices), to its CPU quota
    assert [(n.name, n.devices, n.cpu_millis) for n in found[3:]] == [("cq/m3", 0, 16_000)]


def test_the_create_pages_prediction_plans_over_the_cluster_queues_quota(
    fake_kueue, project, alice
):
    spec = factories.node_spec("mlu-8", devices=8)
    mlu_cluster(nodes=4, quota=16)
    running = factories.job(project, alice, duration=timedelta(hours=3))
    running.spec_choices.update(spec=spec)
    states.transition(
        running,
        JobStatus.RUNNING,
        changes={"placement": [{"rank": 0, "node": "mlu-2", "devices": []}], "spec_in_use": spec},
    )

    one = prediction.predict_draft(project=project, specs=[spec], node_count=1)
    two = prediction.predict_draft(project=project, specs=[spec], node_count=2)

    # four nodes, but a quota of two: one is free now, two wait for the running job
    assert one.starts_now
    assert not two.starts_now and two.start is not None
    assert abs((two.start - (running.started_at + timedelta(hours=3))).total_seconds()) < 5
    assert "Kueue" in two.message()


def test_the_queues_are_read_from_the_cluster(fake_kueue, kube, db):
    for path in ("cluster-queue.yaml", "resource-flavors.yaml", "local-queues.yaml"):
        for doc in yaml.safe_load_all((DEPLOY / path).read_text()):
            plural = doc["kind"].lower() + "s"
            namespace = doc["metadata"].get("namespace") and NAMESPACE
            kube.put(f"{KUEUE}/{plural}", doc["metadata"]["name"], doc, namespace=namespace)

    assert sync_queues(get_executor()) == 1

    queue = KueueQueue.objects.get(name="jingtiao")
    assert queue.local_queues == ["jingtiao", "team-vision"]
    assert [flavor["name"] for flavor in queue.flavors] == ["cpu", "mlu370-x8", "h100-80g"]
    mlu = queue.flavors[1]
    assert mlu["name"] == "mlu370-x8" and mlu["node_labels"] == {"Model": "MLU370-X8"}
    assert mlu["quotas"]["cambricon.com/mlu"] == "128"


# --- what Kueue says, and the manifests -----------------------------------------


def test_kueues_reasons_are_said_in_the_readers_language():
    reason = observing.kueue_reason(INSUFFICIENT)
    with translation.override("zh-hans"):
        chinese = reason.render()
    assert "cambricon.com/mlu" in chinese and "mlu370-x8" in chinese
    assert "insufficient" not in chinese and "Kueue" in chinese
    unknown = observing.kueue_reason("something new entirely")
    assert "something new entirely" in unknown


def test_a_deactivated_workload_fails_the_job():
    job = {"metadata": {"name": "jingtiao-job-1"}, "spec": {"suspend": True}}
    workload = {
        "spec": {"active": False},
        "status": {"conditions": [condition("Evicted", "True", "InactiveWorkload", "gone")]},
    }
    state = observing.kueue_job_state(1, job, [], workload)
    assert state.phase == Phase.FAILED and "InactiveWorkload" in state.reason


@pytest.mark.parametrize("path", sorted(DEPLOY.glob("*.yaml")), ids=lambda p: p.name)
def test_the_kueue_deploy_files_are_valid(path):
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("kind") == "Kustomization":
            continue
        if doc["apiVersion"].startswith("kueue.x-k8s.io/"):
            valid_kueue_object(doc)
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schemas_refuse_what_kueue_refuses():
    with pytest.raises(jsonschema.ValidationError):
        valid_kueue_object(
            {
                "apiVersion": KUEUE,
                "kind": "LocalQueue",
                "metadata": {"name": "q", "namespace": "n"},
                "spec": {},
            }
        )
    with pytest.raises(jsonschema.ValidationError):
        valid_kueue_object(
            {
                "apiVersion": KUEUE,
                "kind": "ResourceFlavor",
                "metadata": {"name": "f"},
                "spec": {"nodeLabel": {}},
            }
        )


@pytest.fixture
def eager():
    from config.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_the_platforms_tasks_drive_kueue_mode(
    fake_kueue, kube, project, alice, eager, django_capture_on_commit_callbacks
):
    from finetune.services.jobs import change_priority
    from scheduler import tasks

    job = factories.job(project, alice)
    tasks.run_admission()  # the periodic pass: submits, never admits
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert manifests.workload_name(job.pk) in kube.stored(JOBS)

    with django_capture_on_commit_callbacks(execute=True):
        change_priority(alice, job, Priority.HIGH)  # F2: a pass follows, relabelling it
    labels = kube.stored(JOBS)[manifests.workload_name(job.pk)]["metadata"]["labels"]
    assert labels[manifests.KUEUE_PRIORITY_LABEL] == "jingtiao-high"

    fake_kueue.sync()
    fake_kueue.admit(job.pk)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.observe_running_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert patches_that_unsuspend(kube) == []


def test_a_submission_cut_short_is_made_again_whole(fake_kueue, kube, project, alice):
    job = factories.job(project, alice)
    kube.fail_next("POST", "/secrets", status=503)
    assert kueue.run_pass() == []  # the Job was made, its Secret was not
    stored = kube.stored(JOBS)[manifests.workload_name(job.pk)]
    assert manifests.KUEUE_QUEUE_LABEL not in stored["metadata"]["labels"]  # Kueue ignores it
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED

    kueue.run_pass()  # clears what the cut-short submission left
    kueue.run_pass()  # and submits it whole
    stored = kube.stored(JOBS)[manifests.workload_name(job.pk)]
    assert stored["metadata"]["labels"][manifests.KUEUE_QUEUE_LABEL] == "jingtiao"
    job.refresh_from_db()
    key = stored["metadata"]["annotations"][manifests.LAUNCH_ANNOTATION]
    assert key == job.report_token_hash  # the Secret's token is the one the job accepts
    assert manifests.workload_name(job.pk) in kube.stored("v1/secrets")


def test_a_priority_kueue_refuses_to_change_leaves_the_job_waiting(
    fake_kueue, kube, project, alice
):
    job = factories.job(project, alice, priority=Priority.LOW)
    kueue.run_pass()
    Job.objects.filter(pk=job.pk).update(priority=Priority.HIGH)
    kube.fail_next("PATCH", f"/jobs/{manifests.workload_name(job.pk)}", status=422)

    kueue.run_pass()

    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    kueue.run_pass()  # and the next pass tries again
    labels = kube.stored(JOBS)[manifests.workload_name(job.pk)]["metadata"]["labels"]
    assert labels[manifests.KUEUE_PRIORITY_LABEL] == "jingtiao-high"


def test_a_job_stopped_during_the_cycle_does_not_stop_the_others(
    fake_kueue, kube, project, alice, monkeypatch
):
    first, second = factories.job(project, alice), factories.job(project, alice)
    kueue.run_pass()
    fake_kueue.sync()
    fake_kueue.admit(first.pk)
    fake_kueue.admit(second.pk)
    executor = get_executor()
    observe = executor.observe

    def stopped_meanwhile(job_ids):
        found = observe(job_ids)
        Job.objects.filter(pk=first.pk).update(status=JobStatus.STOPPED)
        return found

    monkeypatch.setattr(executor, "observe", stopped_meanwhile)
    assert follow() == {second.pk: JobStatus.RUNNING}


def test_a_stop_that_cannot_read_the_workloads_still_removes_the_job(
    fake_kueue, kube, project, alice
):
    job = factories.job(project, alice)
    kueue.run_pass()
    fake_kueue.sync()
    kube.fail_next("GET", "/workloads", status=403)  # its rights to Workloads missing

    get_executor().stop(job.pk)

    assert manifests.workload_name(job.pk) not in kube.stored(JOBS)


def test_a_cpu_flavor_among_device_flavors_holds_the_cpu_nodes():
    nodes = [QuotaNode(node("c0", devices=0, device_type="none", model=""), {"role": "cpu"})]
    nodes.append(QuotaNode(node("m0"), {"Model": "MLU370-X8"}))
    flavors = [
        {
            "name": "cpu",
            "node_labels": {"role": "cpu"},
            "quotas": {"cpu": "32", "memory": "128Gi", "cambricon.com/mlu": "0"},
        },
        {
            "name": "mlu",
            "node_labels": {"Model": "MLU370-X8"},
            "quotas": {"cambricon.com/mlu": "8"},
        },
    ]

    found = quota_nodes("cq", flavors, nodes, {"cambricon.com/mlu"})

    assert [(n.name, n.devices, n.cpu_millis) for n in found] == [
        ("cq/c0", 0, 32_000),
        ("cq/m0", 8, 64_000),
    ]


def test_before_the_queues_are_read_the_prediction_plans_over_the_nodes(fake_kueue, project, alice):
    spec = factories.node_spec("mlu-8", devices=8)
    mlu_cluster(nodes=2, quota=8)
    KueueQueue.objects.all().delete()  # not read yet (or not readable)

    assert prediction.predict_draft(project=project, specs=[spec], node_count=2).starts_now
