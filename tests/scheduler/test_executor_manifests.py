"""Every manifest the kubernetes backend produces, and those in deploy/kubernetes/, is
valid for a recent Kubernetes (strict: unknown fields are errors)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from scheduler.executors import manifests
from scheduler.executors.base import LaunchRequest
from scheduler.executors.kubernetes import KubernetesExecutor
from tests.scheduler.conftest import placement

KUBERNETES_VERSION = "1.33.0"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
CONFIG = manifests.ManifestConfig(
    namespace="jingtiao",
    image="registry.example.com/jingtiao-trainer:0.1.0",
    data_pvc="jingtiao-data",
    data_root="/data",
    mlu_resource="cambricon.com/mlu",
    gpu_resource="nvidia.com/gpu",
)


def launch_request(
    nodes: tuple[str, ...], device_type: str = "mlu", taint: str = "", **fields
) -> LaunchRequest:
    devices = 0 if device_type == "none" else 4
    values = {"device_type": device_type, "devices_per_node": devices, "processes_per_node": 1}
    return LaunchRequest(
        job_id=42,
        placement=placement(nodes=nodes, **{**values, **fields}),
        trainer_spec={"job_id": 42, "report": {"url": "http://web/report", "token": "t"}},
        report_token="t",
        pool_taint=taint,
    )


# Two nodes of eight MLU370 each, the resource named as Cambricon's plugin names it with
# its device types on.
EIGHT_MLU_TWICE = launch_request(
    ("mlu-a", "mlu-b"),
    devices_per_node=8,
    processes_per_node=8,
    cpu_millis=64_000,
    device_resource="cambricon.com/mlu370",
)


# With Kueue admission: no nodes chosen, the Job labelled for Kueue; one with a device
# model (nodes of that model), one limited to nodes the user named.
KUEUE_GANG = replace(
    launch_request(("", ""), device_model="MLU370-X8"),
    kueue_queue="jingtiao",
    kueue_priority_class="jingtiao-high",
)
KUEUE_NAMED = replace(
    launch_request(("",)),
    kueue_queue="team-a",
    kueue_priority_class="jingtiao-low",
    kueue_node_names=("mlu-7",),
)


def backend_manifests() -> list[dict]:
    found = []
    for request in (
        launch_request(("a",)),
        launch_request(("a", "b", "c"), "gpu", "dedicated=team-a:NoSchedule"),
        launch_request(("a",), "none", "cpu-only:NoExecute"),
        EIGHT_MLU_TWICE,
        KUEUE_GANG,
        KUEUE_NAMED,
    ):
        owner = manifests.owner_reference("jingtiao-job-42", "0b7e6a4c-1111-2222-3333-444455556666")
        found += [
            manifests.job(request, CONFIG, "launch-key"),
            manifests.config_map(request, CONFIG, owner),
            manifests.secret(request, CONFIG, owner),
            manifests.service(request, CONFIG, owner),
        ]
    return found


def deploy_manifests() -> list[dict]:
    found = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


@pytest.mark.parametrize(
    "manifest",
    backend_manifests() + deploy_manifests(),
    ids=lambda m: f"{m['kind']}/{m['metadata']['name']}",
)
def test_the_manifest_is_valid_for_a_recent_kubernetes(manifest):
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_pods_run_as_non_root_without_privilege_escalation():
    pod = manifests.job(launch_request(("a",)), CONFIG, "k")["spec"]["template"]["spec"]
    container = pod["containers"][0]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_pods_are_pinned_to_the_planners_nodes_and_carry_the_labels():
    job = manifests.job(launch_request(("b", "a", "c"), "gpu"), CONFIG, "k")
    pod = job["spec"]["template"]["spec"]
    [term] = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]

    assert term["matchExpressions"] == [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["a", "b", "c"]}
    ]
    assert job["spec"]["template"]["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "jingtiao",
        "jingtiao.io/job-id": "42",
    }
    assert pod["containers"][0]["resources"]["requests"]["nvidia.com/gpu"] == "4"
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["data"] == "/data"


def test_each_rank_of_a_gang_gets_a_node_of_its_own():
    """Issue 13, item 4: the node affinity names the planned nodes, the anti-affinity
    keeps two ranks of the job off one of them."""
    pod = manifests.job(launch_request(("a", "b", "c")), CONFIG, "k")["spec"]["template"]["spec"]
    [rule] = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert rule == {
        "labelSelector": {"matchLabels": {"jingtiao.io/job-id": "42"}},
        "topologyKey": "kubernetes.io/hostname",
    }
    # the selector matches the pods' own labels, so it counts exactly this job's ranks
    labels = manifests.job(launch_request(("a", "b")), CONFIG, "k")["spec"]["template"]
    assert labels["metadata"]["labels"]["jingtiao.io/job-id"] == "42"
    one = manifests.job(launch_request(("a",)), CONFIG, "k")["spec"]["template"]["spec"]
    assert "podAntiAffinity" not in one["affinity"]  # one rank: nothing to keep apart


def test_two_nodes_of_eight_mlu_run_eight_processes_each_under_torchrun():
    """Issue 13, item 1: one process per device, 2 x 8 = 16 ranks, on the spec's resource."""
    job = manifests.job(EIGHT_MLU_TWICE, CONFIG, "k")
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    command = container["command"]

    assert command[:3] == ["python", "-c", manifests.SPEC_SHIM]
    assert command[3:] == [
        "python",
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--node-rank=$NODE_RANK",  # the shim fills in the pod's completion index
        "--nproc-per-node=8",
        "--master-addr=jingtiao-job-42-0.jingtiao-job-42",
        "--master-port=29500",
        "--max-restarts=0",
        "--no-python",
        *manifests.TRAINER,
    ]
    resources = container["resources"]
    assert resources["requests"]["cambricon.com/mlu370"] == "8"
    assert resources["limits"]["cambricon.com/mlu370"] == "8"
    assert "cambricon.com/mlu" not in resources["requests"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OMP_NUM_THREADS"] == "8"  # 64 CPUs shared by 8 processes
    assert "WORLD_SIZE" not in env and "LOCAL_RANK" not in env  # torchrun's to give
    assert pod["subdomain"] == "jingtiao-job-42"
    assert "podAntiAffinity" in pod["affinity"]
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 2
    # the run command shown on the job's page is this one
    shown = KubernetesExecutor.run_command(None, EIGHT_MLU_TWICE)
    assert shown == " ".join(command[3:])


def test_a_job_of_one_process_runs_the_trainer_itself():
    [container] = manifests.job(launch_request(("a",), devices_per_node=1), CONFIG, "k")["spec"][
        "template"
    ]["spec"]["containers"]
    assert container["command"][3:] == manifests.TRAINER


def test_the_node_rank_comes_from_the_completion_index():
    job = manifests.job(launch_request(("a", "b")), CONFIG, "k")
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}

    path = env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert path == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert env["JINGTIAO_REPORT_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "jingtiao-job-42"


def test_a_taint_without_a_value_is_tolerated_by_key():
    assert manifests.parse_taint("gpu-only:NoSchedule") == {
        "key": "gpu-only",
        "operator": "Exists",
        "effect": "NoSchedule",
    }
    assert manifests.parse_taint("") is None
    with pytest.raises(ValueError):
        manifests.parse_taint("NoSchedule")


def test_the_role_grants_only_what_the_backend_uses():
    role = next(m for m in deploy_manifests() if m["kind"] == "Role")
    grants = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }

    assert grants[("batch", "jobs")] == {"create", "get", "list", "patch", "delete"}
    assert grants[("", "pods")] == {"list"}
    assert grants[("", "secrets")] == {"create", "patch", "delete"}
    assert all("*" not in verbs for verbs in grants.values())
    # cluster-wide: only listing nodes, and pods (other tenants' requests, node sync)
    cluster = next(m for m in deploy_manifests() if m["kind"] == "ClusterRole")
    assert cluster["rules"] == [
        {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["list"]}
    ]


def test_the_spec_shim_puts_the_token_into_a_private_spec_and_runs_the_trainer(tmp_path):
    shim = manifests.SPEC_SHIM.replace(manifests.SPEC_MOUNT, str(tmp_path / "in")).replace(
        manifests.RUN_DIR, str(tmp_path / "run")
    )
    (tmp_path / "in").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "in" / "spec.json").write_text('{"job_id": 1, "report": {"url": "u"}}')
    # Stop before exec: the trainer itself is not what this test is about.
    shim = shim.replace("os.execvp(", "print(")
    two_nodes = LaunchRequest(42, placement(("n1", "n2"), processes_per_node=8), {}, "t")
    result = subprocess.run(
        [sys.executable, "-c", shim, *manifests.node_command(two_nodes)],
        env={manifests.TOKEN_ENV: "tok", "NODE_RANK": "1"},
        capture_output=True,
        text=True,
        check=True,
    )

    written = tmp_path / "run" / "spec.json"
    assert yaml.safe_load(written.read_text())["report"] == {"url": "u", "token": "tok"}
    assert oct(written.stat().st_mode & 0o777) == "0o600"
    # the pod's own node rank filled in, then torchrun in front of the trainer
    assert "'--node-rank=1', '--nproc-per-node=8'" in result.stdout
    assert "'--no-python', 'python', '-m', 'trainer', 'run', '--spec'" in result.stdout


def test_with_kueue_the_job_waits_labelled_and_its_pods_choose_no_node():
    gang = manifests.job(KUEUE_GANG, CONFIG, "k")
    labels = gang["metadata"]["labels"]
    # the queue is named last, once the ConfigMap and Secret exist: only then does Kueue see it
    assert manifests.KUEUE_QUEUE_LABEL not in labels
    assert manifests.queue_label(KUEUE_GANG) == {
        "metadata": {"labels": {manifests.KUEUE_QUEUE_LABEL: "jingtiao"}}
    }
    assert labels[manifests.KUEUE_PRIORITY_LABEL] == "jingtiao-high"
    assert gang["spec"]["suspend"] is True
    assert gang["spec"]["podReplacementPolicy"] == "Failed"
    pod = gang["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"Model": "MLU370-X8"}  # Kueue picks a flavor of it
    assert "nodeAffinity" not in pod["affinity"]
    assert pod["affinity"]["podAntiAffinity"]  # a gang still spreads over distinct nodes
    named = manifests.job(KUEUE_NAMED, CONFIG, "k")["spec"]["template"]["spec"]
    terms = named["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["mlu-7"]
