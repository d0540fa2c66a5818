"""Builders for test objects. Names follow the cast of tests/conftest.py."""

from __future__ import annotations

from datetime import timedelta
from itertools import count

from accounts.models import Access, Project
from finetune import access
from finetune.models import (
    Algorithm,
    Dataset,
    Job,
    JobNodeSpec,
    JobStatus,
    ModelRepo,
    PretrainedModel,
    Scenario,
)
from scheduler.models import DeviceType, NodeSpec

_sequence = count(1)


def scenario(code: str = "llm/sft") -> Scenario:
    if not Scenario.objects.exists():
        # A transactional test (the browser's) flushed the rows the migration seeded.
        from finetune.catalog_sync import sync_catalog

        sync_catalog()
    return Scenario.objects.get(code=code)


def algorithm(code: str = "sft_lora", scenario_code: str = "llm/sft") -> Algorithm:
    found, _created = Algorithm.objects.get_or_create(
        code=code,
        defaults={
            "scenario": scenario(scenario_code),
            "name": code,
            "name_zh": code,
            "parameters_schema": {"type": "object", "properties": {}},
        },
    )
    return found


def pretrained_model() -> PretrainedModel:
    found, _created = PretrainedModel.objects.get_or_create(
        name="tiny-llama", defaults={"task_type": "llm", "family": "llama", "location": "m"}
    )
    return found


def node_spec(name: str = "mlu-1", devices: int = 1) -> NodeSpec:
    found, _created = NodeSpec.objects.get_or_create(
        name=name,
        defaults={
            "cpu_millis": 8000,
            "memory_mib": 32768,
            "device_type": DeviceType.MLU,
            "device_count": devices,
        },
    )
    return found


def dataset(project: Project, creator, level: str = Access.READ_WRITE, **fields) -> Dataset:
    fields.setdefault("name", f"data-{next(_sequence)}")
    fields.setdefault("scenario", scenario())
    fields.setdefault("format", Dataset.Format.SFT_MESSAGES)
    fields.setdefault("location", f"datasets/{project.pk}/{fields['name']}")
    obj = Dataset.objects.create(project=project, creator=creator, **fields)
    access.share_new(obj, level)
    return obj


def model_repo(project: Project, creator, level: str = Access.READ_WRITE, **fields) -> ModelRepo:
    fields.setdefault("name", f"repo-{next(_sequence)}")
    fields.setdefault("scenario", scenario())
    fields.setdefault("location", f"repos/{project.pk}/{fields['name']}")
    obj = ModelRepo.objects.create(project=project, creator=creator, **fields)
    access.share_new(obj, level)
    return obj


def job(
    project: Project,
    creator,
    level: str = Access.READ_WRITE,
    status: str = JobStatus.QUEUED,
    **fields,
) -> Job:
    """A job with its grants, as job creation will make it."""
    fields.setdefault("name", f"job-{next(_sequence)}")
    fields.setdefault("scenario", scenario())
    fields.setdefault("algorithm", algorithm())
    fields.setdefault("pretrained_model", pretrained_model())
    if "train_dataset" not in fields:
        fields["train_dataset"] = dataset(project, creator)
    if "model_repo" not in fields:
        fields["model_repo"] = model_repo(project, creator)
    fields.setdefault("duration", timedelta(hours=2))
    obj = Job.objects.create(project=project, creator=creator, status=status, **fields)
    JobNodeSpec.objects.create(job=obj, spec=node_spec(), rank=0)
    access.share_new(obj, level)
    return obj
