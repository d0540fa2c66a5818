"""A real, tiny LoRA SFT job, queued and ready for admission on this machine: a
tiny Llama-style model and chat data built locally, a CPU node spec, and the local
executor's node in the inventory. Used by the tests that train for real."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from accounts.models import Access
from finetune.models import Dataset, Job, JobStatus, PretrainedModel
from finetune.storage import resolve
from scheduler import inventory
from scheduler.models import DeviceType, NodeSpec
from scheduler.settling import settle_running_jobs
from tests import factories


def queued_sft_job(
    project,
    creator,
    executor,
    *,
    rows: int = 32,
    repo: str = "sft",
    algorithm: str = "sft_lora",
    spec: dict | None = None,
    **fields,
) -> Job:
    from trainer.samples import write_sample_dataset
    from trainer.tiny import build_tiny_llm

    build_tiny_llm(resolve("models/tiny-llama"))
    base = PretrainedModel.objects.create(
        name="tiny-llama", task_type="llm", family="llama", location="models/tiny-llama"
    )
    area = f"datasets/{project.pk}"
    write_sample_dataset("sft_messages", resolve(f"{area}/chat/data.jsonl"), rows=rows, seed=0)
    write_sample_dataset("sft_messages", resolve(f"{area}/chat-val/data.jsonl"), rows=8, seed=1)
    train = factories.dataset(project, creator, Access.READ_WRITE, name="chat")
    validation = factories.dataset(project, creator, Access.READ_WRITE, name="chat-val")
    Dataset.objects.filter(pk__in=[train.pk, validation.pk]).update(validation_status="valid")
    cpu = NodeSpec.objects.create(
        **{
            "name": "cpu-1c2g",
            "cpu_millis": 1000,
            "memory_mib": 2048,
            "device_type": DeviceType.NONE,
            **(spec or {}),
        }
    )
    inventory.sync_nodes(list(executor.nodes()))
    job = factories.job(
        project,
        creator,
        algorithm=factories.algorithm(algorithm),
        pretrained_model=base,
        train_dataset=train,
        validation_dataset=validation,
        model_repo=factories.model_repo(project, creator, name=repo),
        duration=timedelta(hours=1),
        **fields,
    )
    job.spec_choices.all().delete()
    job.spec_choices.create(spec=cpu, rank=0)
    Job.objects.filter(pk=job.pk).update(queued_at=job.created_at)
    return job


def queued_t2i_job(project, creator, executor, *, parameters: dict, name: str = "t2i-run") -> Job:
    """A tiny text-to-image LoRA job (a tiny Stable-Diffusion-style pipeline, captioned
    images built locally), queued on a CPU spec, ready for admission."""
    from finetune.catalog_sync import sync_catalog
    from finetune.models import Algorithm
    from trainer.samples import write_sample_dataset
    from trainer.tiny import build_tiny_t2i

    sync_catalog()  # the real schema: its defaults fill what `parameters` leaves out
    build_tiny_t2i(resolve("models/tiny-sd"))
    base = PretrainedModel.objects.create(
        name="tiny-sd", task_type="t2i", family="sd", location="models/tiny-sd"
    )
    area = f"datasets/{project.pk}"
    write_sample_dataset("t2i", resolve(f"{area}/images"), rows=16)
    scenario = factories.scenario("t2i/finetune")
    train = factories.dataset(
        project, creator, name="images", scenario=scenario, format="t2i", location=f"{area}/images"
    )
    Dataset.objects.filter(pk=train.pk).update(validation_status="valid")
    cpu = NodeSpec.objects.create(
        name="cpu-1c2g", cpu_millis=1000, memory_mib=2048, device_type=DeviceType.NONE
    )
    inventory.sync_nodes(list(executor.nodes()))
    job = factories.job(
        project,
        creator,
        name=name,
        scenario=scenario,
        algorithm=Algorithm.objects.get(code="t2i_lora"),
        pretrained_model=base,
        train_dataset=train,
        model_repo=factories.model_repo(project, creator, name="images", scenario=scenario),
        duration=timedelta(hours=1),
        parameters=parameters,
    )
    job.spec_choices.all().delete()
    job.spec_choices.create(spec=cpu, rank=0)
    Job.objects.filter(pk=job.pk).update(queued_at=job.created_at)
    return job


def settled(executor, job: Job, timeout: float = 300) -> Job:
    """Settle the job as the observe task does, every second, until it has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        settle_running_jobs(executor, on_ended=executor.stop)
        job.refresh_from_db()
        if job.status != JobStatus.RUNNING:
            return job
        time.sleep(1)
    executor.stop(job.pk)
    pytest.fail(f"job {job.pk} still running after {timeout} s")
