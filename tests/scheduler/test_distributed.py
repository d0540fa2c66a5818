"""Issue 13: a job trains with one process per device (here: per CPU process of its
spec) on every node of its gang, for real, through the platform on this machine.

The local executor presents this machine as several nodes (JINGTIAO_LOCAL_NODES), so a
two-node job's rendezvous, placement and logs are the real ones: two torchrun
launchers that meet at node 0, each starting its node's ranks.
"""

from __future__ import annotations

import json
import re

import pytest

from finetune.models import Job, JobStatus, ModelVersion
from finetune.storage import job_dir, resolve
from scheduler import admission
from scheduler.executors import get_executor
from tests.realjobs import queued_sft_job, settled

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# every rank says so once it is through its first training step
TRAINED = re.compile(r"\[rank (\d+)\] jingtiao\.train: first step done on rank \d+ of (\d+)")
TRAINING = {
    "max_steps": 8,
    "batch_size": 2,
    "max_length": 64,
    "logging_steps": 1,
    "learning_rate": 1e-3,
    "warmup_ratio": 0,
}


@pytest.fixture
def local_nodes(settings):
    def configure(count: int):
        settings.JINGTIAO_EXECUTOR = "local"
        settings.JINGTIAO_STOP_GRACE_SECONDS = 2
        settings.JINGTIAO_LOCAL_NODES = count
        # Nothing listens there: the trainers' reports fail softly. A platform that
        # happens to run on this machine's usual port would refuse them and stop them.
        settings.JINGTIAO_REPORT_URL = "http://127.0.0.1:9"
        get_executor.cache_clear()
        return get_executor()

    yield configure
    get_executor.cache_clear()


def _ranks(job: Job, node: int) -> dict[int, int]:
    """rank -> world size, of the ranks that trained, from node `node`'s log."""
    log = (job_dir(job.pk) / f"worker-{node}.log").read_text()
    return {int(rank): int(world) for rank, world in TRAINED.findall(log)}


def _trained(job: Job) -> dict:
    version = ModelVersion.objects.get(pk=job.output_version_id)
    manifest = json.loads((resolve(version.location) / "manifest.json").read_text())
    summary = manifest["metrics"]
    assert summary["final_loss"] < summary["first_loss"] - 0.05, summary
    return {"version": version, "summary": summary}


def _memory_estimate_holds(summary: dict) -> None:
    """The estimate near the peak rank 0 measured over its training loop. A tiny model's
    peak is mostly the interpreter and its libraries, which vary by some 0.15 GiB from
    one environment to the next, hence 40 % here; benchmarks/distributed.py measures
    the estimate's error on a model whose tensors weigh."""
    peak, estimated = summary["peak_memory_bytes"], summary["estimated_memory_bytes"]
    assert abs(estimated - peak) / peak <= 0.4, (estimated, peak)


def test_one_node_of_two_processes_trains_with_two_ranks_and_zero2(project, alice, local_nodes):
    executor = local_nodes(1)
    job = queued_sft_job(
        project,
        alice,
        executor,
        algorithm="sft_full",
        spec={"cpu_millis": 2000, "memory_mib": 4096, "cpu_processes": 2},
        parameters={**TRAINING, "sharding": "zero2"},
    )

    assert admission.run_admission() == [job.pk]
    job.refresh_from_db()
    assert "-m torch.distributed.run --nnodes=1 --node-rank=$NODE_RANK" in job.run_command
    assert "--nproc-per-node=2" in job.run_command

    job = settled(executor, job)
    assert job.status == JobStatus.SUCCEEDED, job.status_reason
    assert _ranks(job, 0) == {0: 2, 1: 2}
    trained = _trained(job)
    _memory_estimate_holds(trained["summary"])
    log = (job_dir(job.pk) / "worker-0.log").read_text()
    assert "sharding: zero2, config written to" in log
    # a plain Hugging Face model, loaded without DeepSpeed
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resolve(trained["version"].location) / "model")
    assert model.num_parameters() > 0


def test_two_nodes_of_two_processes_meet_at_node_zero_with_zero3(project, alice, local_nodes):
    executor = local_nodes(2)
    nodes = [node.name for node in executor.nodes()]
    assert len(nodes) == 2 and len(set(nodes)) == 2
    job = queued_sft_job(
        project,
        alice,
        executor,
        algorithm="sft_full",
        # a half of this machine each: one CPU, a share of its memory, two processes
        spec={"cpu_millis": 1000, "memory_mib": 4096, "cpu_processes": 2},
        node_count=2,
        parameters={**TRAINING, "sharding": "zero3"},
    )

    assert admission.run_admission() == [job.pk]
    job.refresh_from_db()
    assert sorted(entry["node"] for entry in job.placement) == sorted(nodes)
    assert "--nnodes=2" in job.run_command and "--nproc-per-node=2" in job.run_command

    job = settled(executor, job)
    assert job.status == JobStatus.SUCCEEDED, job.status_reason
    # node 0 started global ranks 0 and 1, node 1 ranks 2 and 3, of a world of four
    assert _ranks(job, 0) == {0: 4, 1: 4}
    assert _ranks(job, 1) == {2: 4, 3: 4}
    assert ModelVersion.objects.filter(repo=job.model_repo).count() == 1
    _memory_estimate_holds(_trained(job)["summary"])
