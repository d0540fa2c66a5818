"""The Kubernetes objects of one platform job, as plain dicts.

Pure functions of a LaunchRequest and a ManifestConfig: no API calls, no
settings lookups, so every manifest can be validated and unit-tested on its
own. Names are deterministic from the job id, which is what makes a retried
launch find (409) instead of duplicate what an earlier attempt created.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from scheduler.executors import commands
from scheduler.executors.base import LaunchRequest

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "jingtiao"
JOB_ID_LABEL = "jingtiao.io/job-id"
LAUNCH_ANNOTATION = "jingtiao.io/launch"  # sha256 of the report token: one value per launch
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
CONTAINER = "trainer"
MASTER_PORT = 29500
SPEC_MOUNT = "/etc/jingtiao"  # the ConfigMap, read-only, without the token
RUN_DIR = "/run/jingtiao"  # an emptyDir where the spec with the token is assembled
TOKEN_ENV = "JINGTIAO_REPORT_TOKEN"
# Kueue reads these off a Job (kubernetes-sigs/kueue, "Run a Kubernetes Job").
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"

# The ConfigMap holds the spec without the secret token; the token comes from
# the Secret through the environment. This shim, run by the trainer image's
# python, joins them into a private file and then becomes the node's command (its
# arguments, with the pod's variables such as $NODE_RANK filled in), so the token
# never sits in a ConfigMap and the trainer still reads one spec file.
SPEC_SHIM = (
    "import json, os, sys\n"
    f"spec = json.load(open('{SPEC_MOUNT}/spec.json'))\n"
    f"spec['report'] = dict(spec.get('report') or {{}}, token=os.environ.pop('{TOKEN_ENV}', ''))\n"
    f"fd = os.open('{RUN_DIR}/spec.json', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)\n"
    "with os.fdopen(fd, 'w') as handle:\n"
    "    json.dump(spec, handle)\n"
    "command = [os.path.expandvars(word) for word in sys.argv[1:]]\n"
    "os.execvp(command[0], command)\n"
)
TRAINER = ["python", "-m", "trainer", "run", "--spec", f"{RUN_DIR}/spec.json"]
# A failed rank writes why here (trainer/runner.py); the kubelet then makes it the
# container's termination message instead of the log's last lines.
TERMINATION_LOG = "/dev/termination-log"


@dataclass(frozen=True)
class ManifestConfig:
    namespace: str
    image: str
    data_pvc: str
    data_root: str  # where the shared volume is mounted, as the spec's paths expect
    mlu_resource: str
    gpu_resource: str
    run_as_user: int = 1000
    image_pull_policy: str = "IfNotPresent"
    model_label: str = "Model"  # the node label that names its device model


def workload_name(job_id: int) -> str:
    """Job, Service, ConfigMap and Secret share it: one name to find them all."""
    return f"jingtiao-job-{job_id}"


_WORKLOAD_NAME = re.compile(r"jingtiao-job-(\d+)")


def job_id_of(name: str | None) -> int | None:
    """The job a workload name stands for (None: not one of ours)."""
    found = _WORKLOAD_NAME.fullmatch(name or "")
    return int(found.group(1)) if found else None


def labels(job_id: int) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, JOB_ID_LABEL: str(job_id)}


def selector_all() -> str:
    return f"{MANAGED_BY}={MANAGER}"


def selector_job(job_id: int) -> str:
    return f"{MANAGED_BY}={MANAGER},{JOB_ID_LABEL}={job_id}"


def _metadata(request: LaunchRequest, config: ManifestConfig, owner: dict | None) -> dict:
    meta: dict[str, Any] = {
        "name": workload_name(request.job_id),
        "namespace": config.namespace,
        "labels": labels(request.job_id),
    }
    if owner:
        meta["ownerReferences"] = [owner]
    return meta


def owner_reference(job_name: str, uid: str) -> dict[str, Any]:
    """Makes the ConfigMap, Secret and Service go when the Job goes (cascading delete)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": job_name,
        "uid": uid,
        "controller": False,
        "blockOwnerDeletion": True,
    }


def config_map(request: LaunchRequest, config: ManifestConfig, owner: dict | None = None) -> dict:
    spec = dict(request.trainer_spec)
    report = dict(spec.get("report") or {})
    report.pop("token", None)
    spec["report"] = report or None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(request, config, owner),
        "data": {"spec.json": json.dumps(spec, ensure_ascii=False, indent=2)},
    }


def secret(request: LaunchRequest, config: ManifestConfig, owner: dict | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(request, config, owner),
        "type": "Opaque",
        "stringData": {"report-token": request.report_token},
    }


def service(request: LaunchRequest, config: ManifestConfig, owner: dict | None = None) -> dict:
    """Headless: gives each pod of the Indexed Job a DNS name, <job>-<index>.<service>."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(request, config, owner),
        "spec": {
            "clusterIP": "None",
            "selector": labels(request.job_id),
            # Workers must find rank 0 before it reports ready: there is no readiness probe.
            "publishNotReadyAddresses": True,
            "ports": [{"name": "rendezvous", "port": MASTER_PORT, "targetPort": MASTER_PORT}],
        },
    }


def parse_taint(taint: str) -> dict[str, str] | None:
    """'key=value:Effect' or 'key:Effect' as a toleration; None when empty."""
    taint = taint.strip()
    if not taint:
        return None
    key_value, _sep, effect = taint.rpartition(":")
    if not key_value:
        raise ValueError(f"taint {taint!r} is not key=value:Effect")
    key, has_value, value = key_value.partition("=")
    toleration = {"key": key, "effect": effect}
    if has_value:
        toleration.update(operator="Equal", value=value)
    else:
        toleration["operator"] = "Exists"
    return toleration


def device_resource(device_type: str, config: ManifestConfig) -> str | None:
    return {"mlu": config.mlu_resource, "gpu": config.gpu_resource}.get(device_type)


def _resources(request: LaunchRequest, config: ManifestConfig) -> dict[str, dict[str, str]]:
    placement = request.placement
    amounts = {"cpu": f"{placement.cpu_millis}m", "memory": f"{placement.memory_mib}Mi"}
    # The spec's own name (cambricon.com/mlu370 with the plugin's device types on), else
    # the type's default.
    resource = placement.device_resource or device_resource(placement.device_type, config)
    if resource and placement.devices_per_node:
        amounts[resource] = str(placement.devices_per_node)
    # Requests equal limits: the planner counted exactly this much, so the pod
    # gets the Guaranteed class and is the last to be evicted under pressure.
    return {"requests": dict(amounts), "limits": dict(amounts)}


def master_address(job_id: int, nodes: int) -> str:
    """Node 0, where the others meet: its pod's name under the headless Service."""
    name = workload_name(job_id)
    return f"{name}-0.{name}" if nodes > 1 else "127.0.0.1"


def node_command(request: LaunchRequest) -> list[str]:
    """What every pod runs after the shim: the trainer, or torchrun in front of it."""
    placement = request.placement
    return commands.node_command(
        placement,
        TRAINER,
        python="python",
        node_rank="$NODE_RANK",
        master_addr=master_address(request.job_id, placement.node_count),
        master_port=str(MASTER_PORT),
    )


def _env(request: LaunchRequest) -> list[dict[str, Any]]:
    job_id, placement = request.job_id, request.placement
    name = workload_name(job_id)
    index = {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}}
    return [
        # torchrun gives each process its RANK, LOCAL_RANK and WORLD_SIZE.
        {"name": "NODE_RANK", "valueFrom": index},
        {"name": "NNODES", "value": str(placement.node_count)},
        {"name": "MASTER_ADDR", "value": master_address(job_id, placement.node_count)},
        {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
        {"name": "OMP_NUM_THREADS", "value": str(commands.threads_per_process(placement))},
        {"name": "JINGTIAO_JOB_ID", "value": str(job_id)},
        {"name": "JINGTIAO_WORKER_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "JINGTIAO_TERMINATION_LOG", "value": TERMINATION_LOG},
        {
            "name": TOKEN_ENV,
            "valueFrom": {"secretKeyRef": {"name": name, "key": "report-token"}},
        },
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


def job(request: LaunchRequest, config: ManifestConfig, launch_key: str) -> dict[str, Any]:
    """The Indexed Job; created suspended so its ConfigMap and Secret exist before any pod.
    With Kueue admission it stays suspended until Kueue admits it (and unsuspends it)."""
    name = workload_name(request.job_id)
    placement = request.placement
    toleration = parse_taint(request.pool_taint)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "affinity": {},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": config.run_as_user,
            "runAsGroup": config.run_as_user,
            "fsGroup": config.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": CONTAINER,
                "image": config.image,
                "imagePullPolicy": config.image_pull_policy,
                "command": ["python", "-c", SPEC_SHIM, *node_command(request)],
                "env": _env(request),
                "resources": _resources(request, config),
                "ports": [{"name": "rendezvous", "containerPort": MASTER_PORT}],
                # The last log lines become the termination message of a failed
                # worker: the reason a job failed, in words, without a log call.
                "terminationMessagePath": TERMINATION_LOG,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "runAsNonRoot": True,
                },
                "volumeMounts": [
                    {"name": "data", "mountPath": config.data_root},
                    {"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True},
                    {"name": "run", "mountPath": RUN_DIR},
                    {"name": "shm", "mountPath": "/dev/shm"},
                ],
            }
        ],
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": config.data_pvc}},
            {"name": "spec", "configMap": {"name": name}},
            {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
            # Data loaders and collective backends share tensors through /dev/shm,
            # which is 64 MiB by default in a container.
            {"name": "shm", "emptyDir": {"medium": "Memory"}},
        ],
    }
    if request.kueue_queue and placement.device_model:
        # Kueue chooses the flavor (and so the nodes' labels) at admission; the spec's
        # device model narrows the flavors it may choose to those of that model.
        pod_spec["nodeSelector"] = {config.model_label: placement.device_model}
    nodes = request.kueue_node_names if request.kueue_queue else placement.nodes
    if nodes:
        # The planner chose the nodes, or the user named them: the pods go only there.
        pod_spec["affinity"]["nodeAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "kubernetes.io/hostname",
                                "operator": "In",
                                "values": sorted(set(nodes)),
                            }
                        ]
                    }
                ]
            }
        }
    if placement.node_count > 1:
        pod_spec["subdomain"] = name
        # One rank per node, as the planner placed them: without this, two ranks may
        # share a node, the recorded placement is false, and the node the planner
        # counted as used stays empty while another is over-committed.
        pod_spec["affinity"]["podAntiAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {JOB_ID_LABEL: str(request.job_id)}},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    if toleration:
        pod_spec["tolerations"] = [toleration]
    if not pod_spec["affinity"]:
        del pod_spec["affinity"]
    job_labels = labels(request.job_id)
    spec: dict[str, Any] = {}
    if request.kueue_queue:
        # The queue label comes last (queue_label), once the ConfigMap and Secret exist:
        # Kueue admits only a Job that names its queue.
        job_labels[KUEUE_PRIORITY_LABEL] = request.kueue_priority_class
        # Kueue suspends a Job it evicts: its new pods wait until the old ones are gone,
        # so two trainers of one job never run at once.
        spec["podReplacementPolicy"] = "Failed"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": config.namespace,
            "labels": job_labels,
            "annotations": {LAUNCH_ANNOTATION: launch_key},
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": placement.node_count,
            "parallelism": placement.node_count,
            "backoffLimit": 0,
            "suspend": True,
            **spec,
            "template": {
                "metadata": {"labels": labels(request.job_id)},
                "spec": pod_spec,
            },
        },
    }


def queue_label(request: LaunchRequest) -> dict[str, Any]:
    """The patch that hands a Job made for Kueue admission to its LocalQueue."""
    return {"metadata": {"labels": {KUEUE_QUEUE_LABEL: request.kueue_queue}}}
