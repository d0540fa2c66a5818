"""A job goes the whole way on the embedded defaults: queued, admitted by the
planner, launched as a real `python -m trainer run` process by the local
executor, trained on a tiny model, observed, succeeded, and its model stored as
the repo's next version."""

import json
import time
from datetime import timedelta

import pytest

from accounts.models import Access
from finetune.models import Dataset, Job, JobEvent, JobStatus, ModelVersion, PretrainedModel
from finetune.storage import resolve
from scheduler import admission, inventory
from scheduler.executors import get_executor
from scheduler.models import DeviceType, NodeSpec
from scheduler.settling import settle_running_jobs
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def local_executor(settings):
    settings.JINGTIAO_EXECUTOR = "local"
    settings.JINGTIAO_STOP_GRACE_SECONDS = 2
    get_executor.cache_clear()
    yield get_executor()
    get_executor.cache_clear()


def _wait_until_settled(executor, job: Job, timeout: float = 300) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        settle_running_jobs(executor, on_ended=executor.stop)
        job.refresh_from_db()
        if job.status != JobStatus.RUNNING:
            return job
        time.sleep(1)
    executor.stop(job.pk)
    pytest.fail(f"job {job.pk} still running after {timeout} s")


def test_a_queued_sft_job_trains_on_this_machine_and_stores_its_model(
    project, alice, local_executor
):
    from trainer.samples import write_sample_dataset
    from trainer.tiny import build_tiny_llm

    build_tiny_llm(resolve("models/tiny-llama"))
    base = PretrainedModel.objects.create(
        name="tiny-llama", task_type="llm", family="llama", location="models/tiny-llama"
    )
    write_sample_dataset("sft_messages", resolve("datasets/chat/data.jsonl"), rows=32, seed=0)
    write_sample_dataset("sft_messages", resolve("datasets/chat-val/data.jsonl"), rows=8, seed=1)
    train = factories.dataset(
        project, alice, Access.READ_WRITE, name="chat", location="datasets/chat"
    )
    validation = factories.dataset(
        project, alice, Access.READ_WRITE, name="chat-val", location="datasets/chat-val"
    )
    Dataset.objects.filter(pk__in=[train.pk, validation.pk]).update(validation_status="valid")
    repo = factories.model_repo(project, alice, location="repos/demo/sft")
    cpu = NodeSpec.objects.create(
        name="cpu-1c2g", cpu_millis=1000, memory_mib=2048, device_type=DeviceType.NONE
    )
    inventory.sync_nodes(list(local_executor.nodes()))

    job = factories.job(
        project,
        alice,
        algorithm=factories.algorithm("sft_lora"),
        pretrained_model=base,
        train_dataset=train,
        validation_dataset=validation,
        model_repo=repo,
        parameters={"max_steps": 6, "batch_size": 4, "max_length": 128, "logging_steps": 1},
        duration=timedelta(hours=1),
    )
    job.spec_choices.all().delete()
    job.spec_choices.create(spec=cpu, rank=0)
    Job.objects.filter(pk=job.pk).update(queued_at=job.created_at)

    assert admission.run_admission() == [job.pk]
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert "trainer run --spec" in job.run_command

    job = _wait_until_settled(local_executor, job)
    assert job.status == JobStatus.SUCCEEDED, job.status_reason
    version = ModelVersion.objects.get(repo=repo)
    assert job.output_version == version and version.number == 1
    manifest = json.loads((resolve(version.location) / "manifest.json").read_text())
    assert manifest["algorithm"] == "sft_lora"
    kinds = list(
        JobEvent.objects.filter(job=job).order_by("time", "id").values_list("kind", "to_status")
    )
    assert ("status", "running") in kinds and ("launch", "") in kinds
    assert kinds[-1] == ("status", "succeeded")
