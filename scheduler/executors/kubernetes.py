"""The kubernetes backend: one Indexed Job per platform job (DESIGN.md "Executor backends").

Reads go through `_list`, which asks for raw JSON and parses it with `json`,
not the client's models: a cycle over a thousand pods then costs one request
and one parse, and the same dict shapes that manifests.py writes come back.
`observe` makes two list calls whatever the number of jobs (jobs, then pods), and
a third with Kueue admission (its Workloads).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import urllib3
from django.conf import settings
from kubernetes import client, config

from finetune.reports import hash_token
from finetune.storage import job_dir
from scheduler.executors import commands, logfiles, manifests, observing
from scheduler.executors.base import (
    ClusterEvent,
    Executor,
    ExecutorError,
    LaunchRequest,
    LogChunk,
    NodeInfo,
    WorkloadState,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")
LOG_PAGE_BYTES = 256 * 1024
LOG_TAIL_LINES = 2000  # a tail's last lines, read from a live pod
ARCHIVE_MARKER = "logs-archived.json"
#: Event lists the events tab asks for at once (one per pod and one for the Job).
EVENT_CALLS = 8
KUEUE_GROUP, KUEUE_VERSION = "kueue.x-k8s.io", "v1beta2"
VISIBILITY_GROUP, VISIBILITY_VERSION = "visibility.kueue.x-k8s.io", "v1beta2"
KUEUE_JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"  # Kueue labels a Job's Workload with its uid
PENDING_LIMIT = 10_000  # pending workloads read from one LocalQueue at once
CAMBRICON_PREFIX = "cambricon.com/"
CAMBRICON_MLU = "cambricon.com/mlu"
CAMBRICON_MODEL = re.compile(
    r"cambricon\.com/mlu\d+[a-z0-9-]*"
)  # in the job's folder, once its logs are copied there


def api_client_from_settings() -> client.ApiClient:
    """In-cluster credentials, or a kubeconfig file (JINGTIAO_K8S_KUBECONFIG)."""
    configuration = client.Configuration()
    kubeconfig = settings.JINGTIAO_K8S_KUBECONFIG
    if kubeconfig == "in-cluster" or (not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST")):
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(config_file=kubeconfig or None, client_configuration=configuration)
    # Failures surface at once as ExecutorError; the Celery task owns the retry
    # with backoff, so urllib3 must not also retry (and re-POST) behind its back.
    configuration.retries = 0
    return client.ApiClient(configuration)


def manifest_config() -> manifests.ManifestConfig:
    return manifests.ManifestConfig(
        namespace=settings.JINGTIAO_K8S_NAMESPACE,
        image=settings.JINGTIAO_TRAINER_IMAGE,
        data_pvc=settings.JINGTIAO_K8S_DATA_PVC,
        # Workers mount the shared volume where the platform does, so the paths
        # in the spec (under DATA_ROOT) are the same on both sides.
        data_root=str(settings.DATA_ROOT),
        mlu_resource=settings.JINGTIAO_MLU_RESOURCE,
        gpu_resource=settings.JINGTIAO_GPU_RESOURCE,
        run_as_user=settings.JINGTIAO_K8S_RUN_AS_USER,
        model_label=settings.JINGTIAO_K8S_MODEL_LABEL,
    )


def _call(what: str, call: Callable[[], T], *, ok_statuses: tuple[int, ...] = ()) -> T | None:
    """Run one API call; None for an accepted error status (404 on delete, 409 on create)."""
    try:
        return call()
    except client.ApiException as exc:
        if exc.status in ok_statuses:
            return None
        transient = exc.status in (429,) or (exc.status or 0) >= 500 or exc.status == 0
        raise ExecutorError(
            f"kubernetes {what}: HTTP {exc.status} {exc.reason}", transient=transient
        ) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ExecutorError(f"kubernetes {what}: {exc}", transient=True) from exc


def launch_key(request: LaunchRequest) -> str:
    return hash_token(request.report_token)


class KubernetesExecutor(Executor):
    name = "kubernetes"

    def __init__(
        self,
        api_client: client.ApiClient | None = None,
        manifest_config_: manifests.ManifestConfig | None = None,
    ) -> None:
        self.api = api_client or api_client_from_settings()
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.config = manifest_config_ or manifest_config()
        self.namespace = self.config.namespace
        self.timeout = settings.JINGTIAO_K8S_REQUEST_TIMEOUT
        # Kueue admits the jobs: their Workloads say where each one stands.
        self.kueue = settings.JINGTIAO_ADMISSION == "kueue"

    def run_command(self, request: LaunchRequest) -> str:
        return commands.shown(manifests.node_command(request))

    # --- reading -------------------------------------------------------------------------
    def _list(self, what: str, method: Callable[..., Any], **kwargs: Any) -> list[dict]:
        response = _call(
            f"list {what}",
            lambda: method(_preload_content=False, _request_timeout=self.timeout, **kwargs),
        )
        items = json.loads(response.data)["items"] or []
        selector = kwargs.get("label_selector")
        # A selector the server ignored must not let foreign objects in.
        return [item for item in items if _matches(item, selector)]

    def _list_jobs(self, selector: str) -> list[dict]:
        return self._list(
            "jobs",
            self.batch.list_namespaced_job,
            namespace=self.namespace,
            label_selector=selector,
        )

    def _list_pods(self, selector: str) -> list[dict]:
        return self._list(
            "pods", self.core.list_namespaced_pod, namespace=self.namespace, label_selector=selector
        )

    # --- launch --------------------------------------------------------------------------
    def launch(self, request: LaunchRequest) -> None:
        # The archive of an earlier launch (kept when the job was requeued) is not this
        # launch's: the logs tab reads the new pods, and the next stop archives them.
        (job_dir(request.job_id) / ARCHIVE_MARKER).unlink(missing_ok=True)
        name = manifests.workload_name(request.job_id)
        key = launch_key(request)
        body = manifests.job(request, self.config, key)
        created = _call(
            "create job",
            lambda: self.batch.create_namespaced_job(
                self.namespace, body, _preload_content=False, _request_timeout=self.timeout
            ),
            ok_statuses=(409,),
        )
        if created is not None:
            existing = json.loads(created.data)
        else:
            existing = self._read_job(name)
            if existing is None:  # deleted between the 409 and the read
                raise ExecutorError(f"job {name} vanished while launching", transient=True)
            meta = existing["metadata"]
            if meta.get("deletionTimestamp"):
                raise ExecutorError(
                    f"job {name}: the previous workload is still being deleted", transient=True
                )
            if (meta.get("annotations") or {}).get(manifests.LAUNCH_ANNOTATION) != key:
                # Left over by an earlier launch of this job (it was requeued): clear it
                # and let the caller retry, rather than adopt pods with a stale placement.
                self.stop(request.job_id)
                raise ExecutorError(
                    f"job {name}: replacing the workload of an earlier launch", transient=True
                )
        owner = manifests.owner_reference(name, existing["metadata"].get("uid") or "")
        objects = [manifests.config_map(request, self.config, owner)]
        objects.append(manifests.secret(request, self.config, owner))
        if request.placement.node_count > 1:
            objects.append(manifests.service(request, self.config, owner))
        for obj in objects:
            self._create_or_replace(obj)
        if request.kueue_queue:
            # Handed to its LocalQueue, it stays suspended until Kueue admits it.
            _call(
                "queue job",
                lambda: self.batch.patch_namespaced_job(
                    name,
                    self.namespace,
                    manifests.queue_label(request),
                    _preload_content=False,
                    _request_timeout=self.timeout,
                ),
            )
            return
        _call(
            "resume job",
            lambda: self.batch.patch_namespaced_job(
                name,
                self.namespace,
                {"spec": {"suspend": False}},
                _preload_content=False,
                _request_timeout=self.timeout,
            ),
        )

    def _read_job(self, name: str) -> dict | None:
        response = _call(
            "read job",
            lambda: self.batch.read_namespaced_job(
                name, self.namespace, _preload_content=False, _request_timeout=self.timeout
            ),
            ok_statuses=(404,),
        )
        return None if response is None else json.loads(response.data)

    def _create_or_replace(self, obj: dict) -> None:
        kind = obj["kind"]
        snake = {"ConfigMap": "config_map", "Secret": "secret", "Service": "service"}[kind]
        create = getattr(self.core, f"create_namespaced_{snake}")
        patch = getattr(self.core, f"patch_namespaced_{snake}")
        name = obj["metadata"]["name"]
        options = {"_preload_content": False, "_request_timeout": self.timeout}
        if _call(
            f"create {kind}", lambda: create(self.namespace, obj, **options), ok_statuses=(409,)
        ):
            return
        # There already: ours from a retried attempt, or a leftover of an earlier launch
        # awaiting garbage collection. Either way the content (and owner) must be this
        # launch's; the keys are always the same, so a patch overwrites all of them.
        _call(f"patch {kind}", lambda: patch(name, self.namespace, obj, **options))

    # --- observe -------------------------------------------------------------------------
    def observe(self, job_ids: Iterable[int]) -> dict[int, WorkloadState]:
        wanted = set(job_ids)
        if not wanted:
            return {}
        jobs = {_job_id(item): item for item in self._list_jobs(manifests.selector_all())}
        pods_by_job: dict[int, list[dict]] = defaultdict(list)
        for pod in self._list_pods(manifests.selector_all()):
            pods_by_job[_job_id(pod)].append(pod)
        if not self.kueue:
            return {
                job_id: observing.job_state(job_id, jobs.get(job_id), pods_by_job.get(job_id, []))
                for job_id in wanted
            }
        workloads = self.workloads(jobs)
        return {
            job_id: observing.kueue_job_state(
                job_id,
                jobs.get(job_id),
                pods_by_job.get(job_id, []),
                workloads.get(job_id),
            )
            for job_id in wanted
        }

    # --- Kueue ---------------------------------------------------------------------------
    def workloads(self, jobs: dict[int, dict]) -> dict[int, dict]:
        """Kueue's Workload of each of these jobs (their Jobs by job id), from one list
        call: the Workload owned by the Job there now, not one of a Job since replaced."""
        items = self._list_kueue("workloads")
        found: dict[int, dict] = {}
        for item in items:
            name, uid = observing.workload_owner(item)
            job_id = manifests.job_id_of(name)
            job = jobs.get(job_id) if job_id is not None else None
            if job is not None and uid == job["metadata"].get("uid"):
                found[job_id] = item
        return found

    def submitted(self) -> dict[int, dict]:
        """Every job's Job, by job id (with Kueue, what was already submitted)."""
        return {_job_id(item): item for item in self._list_jobs(manifests.selector_all())}

    def set_priority_class(self, job_id: int, priority_class: str) -> None:
        """Label the waiting Job with a new WorkloadPriorityClass: Kueue gives its
        Workload the new priority while it waits for quota."""
        name = manifests.workload_name(job_id)
        body = {"metadata": {"labels": {manifests.KUEUE_PRIORITY_LABEL: priority_class}}}
        _call(
            "label job",
            lambda: self.batch.patch_namespaced_job(
                name, self.namespace, body, _preload_content=False, _request_timeout=self.timeout
            ),
            ok_statuses=(404,),
        )

    def pending_workloads(self, local_queue: str) -> list[dict]:
        """Kueue's visibility API: the LocalQueue's pending workloads with their places
        (positionInClusterQueue, positionInLocalQueue), in one call."""
        path = (
            f"/apis/{VISIBILITY_GROUP}/{VISIBILITY_VERSION}/namespaces/{{namespace}}"
            "/localqueues/{name}/pendingworkloads"
        )
        request = self.api.param_serialize(
            method="GET",
            resource_path=path,
            path_params={"namespace": self.namespace, "name": local_queue},
            query_params=[("limit", str(PENDING_LIMIT))],
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = _call(
            "list pending workloads",
            lambda: self._get(request),
            ok_statuses=(404,),
        )
        if response is None:
            return []
        return json.loads(response.data).get("items") or []

    def _get(self, request: tuple) -> Any:
        """A serialized request (ApiClient.param_serialize) sent, its answer read; a
        status other than 2xx raised as the generated methods raise it."""
        response = self.api.call_api(*request, _request_timeout=self.timeout)
        response.read()
        if not 200 <= response.status <= 299:
            raise client.ApiException(http_resp=response)
        return response

    def kueue_queues(self) -> tuple[list[dict], list[dict], list[dict]]:
        """The ClusterQueues, ResourceFlavors and this namespace's LocalQueues."""
        return (
            self._list_kueue("clusterqueues", namespaced=False),
            self._list_kueue("resourceflavors", namespaced=False),
            self._list_kueue("localqueues"),
        )

    def _list_kueue(self, plural: str, *, namespaced: bool = True, **options: Any) -> list[dict]:
        """Kueue's objects of a kind: this namespace's, or the cluster's."""
        method = self.custom.list_cluster_custom_object
        if namespaced:
            method, options["namespace"] = self.custom.list_namespaced_custom_object, self.namespace
        return self._list(
            plural, method, group=KUEUE_GROUP, version=KUEUE_VERSION, plural=plural, **options
        )

    def _delete_workload(self, name: str) -> None:
        """One of the job's Workloads. The garbage collector removes them with the Job
        (they are its dependents); deleting them here says so at once."""
        _call(
            "delete workload",
            lambda: self.custom.delete_namespaced_custom_object(
                KUEUE_GROUP,
                KUEUE_VERSION,
                self.namespace,
                "workloads",
                name,
                _preload_content=False,
                _request_timeout=self.timeout,
            ),
            ok_statuses=(404,),
        )

    def _owned_workloads_if_any(self, job_id: int) -> list[dict]:
        try:
            return self._owned_workloads(job_id)
        except ExecutorError as exc:
            logger.warning("job %s: its Workloads could not be read: %s", job_id, exc)
            return []

    def _owned_workloads(self, job_id: int) -> list[dict]:
        name = manifests.workload_name(job_id)
        job = self._read_job(name)
        if job is None or not job["metadata"].get("uid"):
            return []
        selector = f"{KUEUE_JOB_UID_LABEL}={job['metadata']['uid']}"
        items = self._list_kueue("workloads", label_selector=selector)
        return [item for item in items if observing.workload_owner(item)[0] == name]

    def managed_job_ids(self) -> set[int]:
        return {
            _job_id(item)
            for item in self._list_jobs(manifests.selector_all())
            if not item["metadata"].get("deletionTimestamp")
        }

    # --- stop ----------------------------------------------------------------------------
    def stop(self, job_id: int, *, keep_logs: bool = True) -> None:
        if keep_logs:
            try:
                self.archive_logs(job_id)
            except ExecutorError as exc:
                if exc.transient:
                    raise  # retried; the last try tears down without the logs
                logger.warning("job %s: its logs could not be kept: %s", job_id, exc)
        name = manifests.workload_name(job_id)
        options = {"_preload_content": False, "_request_timeout": self.timeout}
        # Read before the Job goes (its uid is what finds them), and never in the way of
        # its going: the garbage collector removes them with the Job anyway.
        workloads = self._owned_workloads_if_any(job_id) if self.kueue else []
        # Foreground: the Job stays (with a deletionTimestamp) until its pods are gone,
        # so a relaunch cannot start while the old pods still hold the devices.
        body = {"propagationPolicy": "Foreground"}
        _call(
            "delete job",
            lambda: self.batch.delete_namespaced_job(name, self.namespace, body=body, **options),
            ok_statuses=(404,),
        )
        for workload in workloads:
            try:
                self._delete_workload(workload["metadata"]["name"])
            except ExecutorError as exc:
                logger.warning("job %s: its Workload goes with its Job instead: %s", job_id, exc)
        for kind in ("service", "config_map", "secret"):
            delete = getattr(self.core, f"delete_namespaced_{kind}")
            _call(
                f"delete {kind}",
                lambda delete=delete: delete(name, self.namespace, **options),
                ok_statuses=(404,),
            )

    def archive_logs(self, job_id: int) -> None:
        """Copy each worker's log into the job's folder before its pod goes (F7.2).

        Streamed in blocks into a temporary file that is then renamed, so a large log
        is never held whole and a copy cut short never passes for the log. The marker
        file, written last, says the archive is complete; a repeat does nothing.
        """
        folder = job_dir(job_id)
        if (folder / ARCHIVE_MARKER).exists():
            return
        newest = self._newest_pods(job_id)
        if not newest:
            return
        folder.mkdir(parents=True, exist_ok=True)
        archived = {}
        for rank, pod in sorted(newest.items()):
            name = pod["metadata"]["name"]
            response = self._read_log(name)
            target = logfiles.log_path(folder, rank)
            partial = target.with_name(target.name + ".part")
            try:
                with open(partial, "wb") as handle:
                    if response is not None:
                        for block in response.stream(logfiles.BLOCK_BYTES):
                            handle.write(block)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                partial.unlink(missing_ok=True)
                raise ExecutorError(f"kubernetes read log: {exc}", transient=True) from exc
            finally:
                if response is not None:
                    response.release_conn()
            os.replace(partial, target)
            archived[str(rank)] = {"pod": name, "phase": (pod.get("status") or {}).get("phase")}
        marker = folder / ARCHIVE_MARKER
        marker.with_name(marker.name + ".part").write_text(json.dumps(archived, sort_keys=True))
        os.replace(marker.with_name(marker.name + ".part"), marker)

    # --- logs and events -----------------------------------------------------------------
    def logs(
        self, job_id: int, since: str | None = None, *, tail: bool = False
    ) -> Sequence[LogChunk]:
        """Per pod while the pods exist, the cursor mapping each rank to the timestamp of
        its last line; from the archive in the job's folder once they are gone."""
        archive = self._archived(job_id)
        if archive is not None:
            # The pods are gone: every rank's log is whole in the job's folder.
            ended = dict.fromkeys((int(rank) for rank in archive), True)
            return logfiles.read_pages(job_dir(job_id), ended, since, tail=tail)
        cursor: dict[str, str] = json.loads(since) if since and not tail else {}
        now = datetime.now(UTC)
        chunks = []
        for pod in sorted(self._list_pods(manifests.selector_job(job_id)), key=observing.pod_rank):
            rank = observing.pod_rank(pod)
            last = cursor.get(str(rank))
            kwargs: dict[str, Any] = {"timestamps": True, "limit_bytes": LOG_PAGE_BYTES}
            if tail:
                kwargs["tail_lines"] = LOG_TAIL_LINES
            elif last:
                seconds = (now - observing.parse_time(last)).total_seconds()
                kwargs["since_seconds"] = max(1, int(seconds) + 1)
            response = self._read_log(pod["metadata"]["name"], **kwargs)
            raw = response.data if response is not None else b""
            text, newest = _strip_timestamps(raw.decode("utf-8", "replace"), after=last)
            cursor[str(rank)] = newest or last or ""
            ended = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
            chunks.append(
                LogChunk(
                    worker=rank,
                    text=text,
                    next_since=json.dumps(cursor, sort_keys=True),
                    complete=ended and len(raw) < LOG_PAGE_BYTES,
                    skipped=tail and text.count("\n") >= LOG_TAIL_LINES,
                )
            )
        return chunks

    def _archived(self, job_id: int) -> dict | None:
        try:
            return json.loads((job_dir(job_id) / ARCHIVE_MARKER).read_text())
        except FileNotFoundError:
            return None

    def log_blocks(self, job_id: int, rank: int) -> Iterator[bytes]:
        """From the archive once there is one, else streamed from the rank's pod."""
        path = logfiles.log_path(job_dir(job_id), rank)
        if self._archived(job_id) is not None:
            if not path.is_file():
                raise LookupError(path.name)
            return logfiles.blocks(path)
        pod = self._newest_pods(job_id).get(rank)
        response = self._read_log(pod["metadata"]["name"]) if pod else None
        if response is None:
            raise LookupError(f"worker {rank}")
        return _streamed(response)

    def _newest_pods(self, job_id: int) -> dict[int, dict]:
        """The job's pod of each rank; the last one made where a rank's pod was replaced."""
        pods = sorted(
            self._list_pods(manifests.selector_job(job_id)),
            key=lambda pod: pod["metadata"].get("creationTimestamp") or "",
        )
        return {observing.pod_rank(pod): pod for pod in pods}

    def _read_log(self, pod: str, **options: Any) -> Any:
        """The pod's log as an unread response; None when there is none (400: the
        container never started, 404: the pod is gone)."""
        return _call(
            "read log",
            lambda: self.core.read_namespaced_pod_log(
                pod,
                self.namespace,
                container=manifests.CONTAINER,
                _preload_content=False,
                _request_timeout=self.timeout,
                **options,
            ),
            ok_statuses=(400, 404),
        )

    def events(self, job_id: int) -> Sequence[ClusterEvent]:
        """The Job's and its pods' events. The API selects events by one involved object
        at a time (as `kubectl describe` does), so the calls go out side by side, at most
        `EVENT_CALLS` at once: a gang of 64 pods costs about eight round trips, not 65."""
        name = manifests.workload_name(job_id)
        objects = [(name, None)] + [
            (pod["metadata"]["name"], observing.pod_rank(pod))
            for pod in self._list_pods(manifests.selector_job(job_id))
        ]

        def of(object_name: str) -> list[dict]:
            found = self._list(
                "events",
                self.core.list_namespaced_event,
                namespace=self.namespace,
                field_selector=f"involvedObject.name={object_name}",
            )
            # a selector the server ignored must not let other objects' events in
            return [e for e in found if (e.get("involvedObject") or {}).get("name") == object_name]

        with ThreadPoolExecutor(max_workers=min(EVENT_CALLS, len(objects))) as pool:
            answers = list(pool.map(of, [object_name for object_name, _rank in objects]))
        found = []
        for (_object_name, rank), events in zip(objects, answers, strict=True):
            for event in events:
                when = event.get("lastTimestamp") or event.get("eventTime")
                found.append(
                    ClusterEvent(
                        time=observing.parse_time(when) if when else None,
                        kind=event.get("type") or "",
                        reason=event.get("reason") or "",
                        message=event.get("message") or "",
                        worker=rank,
                    )
                )
        oldest = datetime.min.replace(tzinfo=UTC)
        return sorted(found, key=lambda event: event.time or oldest)

    # --- nodes ---------------------------------------------------------------------------
    def nodes(self) -> Sequence[NodeInfo]:
        """Each node's allocatable resources less what other tenants' pods request there:
        the planner plans only what is free for the platform. Two list calls, whatever
        the number of nodes and pods."""
        items = self._list("nodes", self.core.list_node)
        foreign = self._foreign_requests()
        return [self._node_info(item, foreign.get(item["metadata"]["name"], {})) for item in items]

    def _foreign_requests(self) -> dict[str, dict[str, Decimal]]:
        """node -> resource -> what the pods placed there that the platform does not
        manage request (its own jobs the planner counts itself)."""
        pods = self._list(
            "pods",
            self.core.list_pod_for_all_namespaces,
            field_selector="status.phase!=Succeeded,status.phase!=Failed",
        )
        used: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        for pod in pods:
            labels = pod["metadata"].get("labels") or {}
            node = (pod.get("spec") or {}).get("nodeName")
            phase = (pod.get("status") or {}).get("phase")
            if not node or labels.get(manifests.MANAGED_BY) == manifests.MANAGER:
                continue
            if phase in ("Succeeded", "Failed"):  # a server that ignored the selector
                continue
            for resource, amount in observing.pod_requests(pod).items():
                used[node][resource] += amount
        return used

    def _node_info(self, item: dict, foreign: dict[str, Decimal]) -> NodeInfo:
        metadata, status = item["metadata"], item.get("status") or {}
        labels = metadata.get("labels") or {}
        allocatable = status.get("allocatable") or {}

        def free(resource: str) -> Decimal:
            total = observing.quantity(allocatable.get(resource) or "0")
            return max(Decimal(0), total - foreign.get(resource, Decimal(0)))

        device_type, device_count, resource = "none", 0, ""
        for kind, name in self._device_resources(allocatable):
            if observing.quantity(allocatable.get(name) or "0"):
                device_type, device_count, resource = kind, int(free(name)), name
                break
        # Cambricon's device plugin labels the model (Model=MLU370-X8); with its device
        # types on, the resource names it too (cambricon.com/mlu370).
        model = labels.get(settings.JINGTIAO_K8S_MODEL_LABEL, "")
        if not model and resource.startswith(CAMBRICON_PREFIX) and resource != CAMBRICON_MLU:
            model = resource.removeprefix(CAMBRICON_PREFIX).upper()
        return NodeInfo(
            name=metadata["name"],
            cpu_millis=int(free("cpu") * 1000),
            memory_mib=int(free("memory") / 2**20),
            device_type=device_type,
            device_count=device_count,
            labels=labels,
            driver_version=labels.get(settings.JINGTIAO_K8S_DRIVER_LABEL, ""),
            device_model=model,
            pool=labels.get(settings.JINGTIAO_K8S_POOL_LABEL, ""),
            schedulable=not (item.get("spec") or {}).get("unschedulable", False),
        )

    def _device_resources(self, allocatable: dict) -> list[tuple[str, str]]:
        """(device type, resource name) a node may offer its devices as: the configured
        names, then any of Cambricon's per-model names (cambricon.com/mlu370)."""
        found = [("mlu", self.config.mlu_resource), ("gpu", self.config.gpu_resource)]
        found += [("mlu", name) for name in sorted(allocatable) if CAMBRICON_MODEL.fullmatch(name)]
        return found


def _streamed(response: Any) -> Iterator[bytes]:
    try:
        yield from response.stream(logfiles.BLOCK_BYTES)
    finally:
        response.release_conn()


def _matches(item: dict, selector: str | None) -> bool:
    if not selector:
        return True
    labels = item.get("metadata", {}).get("labels") or {}
    pairs = (term.split("=", 1) for term in selector.split(","))
    return all(labels.get(key) == value for key, value in pairs)


def _job_id(item: dict) -> int:
    return int(item["metadata"]["labels"][manifests.JOB_ID_LABEL])


def _strip_timestamps(text: str, after: str | None) -> tuple[str, str | None]:
    """Drop the RFC 3339 prefix of each line and the lines already returned."""
    threshold = observing.parse_time(after) if after else None
    lines, newest = [], None
    for line in text.splitlines(keepends=True):
        stamp, _sep, rest = line.partition(" ")
        try:
            when = observing.parse_time(stamp)
        except ValueError:
            lines.append(line)
            continue
        if threshold is not None and when <= threshold:
            continue
        lines.append(rest)
        newest = stamp
    return "".join(lines), newest
