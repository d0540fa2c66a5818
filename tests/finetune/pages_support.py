"""Shared builders of the page and service tests: a valid job draft and its POST."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from accounts.models import Access
from finetune.catalog_sync import sync_catalog
from finetune.models import Algorithm, Dataset, PretrainedModel
from finetune.services.validation import validate_now
from scheduler.models import DeviceType, Node
from tests import factories
from trainer.samples import write_sample_dataset


def catalog() -> Algorithm:
    """The trainer's real catalog (schemas included) and a base model per task type."""
    sync_catalog()
    PretrainedModel.objects.get_or_create(
        name="tiny-llama", defaults={"task_type": "llm", "family": "llama", "location": "m"}
    )
    PretrainedModel.objects.get_or_create(
        name="tiny-sd", defaults={"task_type": "t2i", "family": "sd", "location": "m2"}
    )
    return Algorithm.objects.get(code="sft_lora")


def good_dataset(project, creator, level=Access.READ_WRITE, name="chat", rows=8) -> Dataset:
    """A data set whose file exists under the data root and passes validation."""
    location = f"datasets/{project.pk}/{name}.jsonl"
    write_sample_dataset("sft_messages", Path(settings.DATA_ROOT) / location, rows=rows)
    return validated(factories.dataset(project, creator, level=level, name=name, location=location))


def validated(dataset: Dataset) -> Dataset:
    """The data set as a worker leaves it once it has validated it."""
    validate_now(dataset.pk)
    dataset.refresh_from_db()
    return dataset


def bad_dataset(project, creator, name="broken") -> Dataset:
    location = f"datasets/{project.pk}/{name}.jsonl"
    path = Path(settings.DATA_ROOT) / location
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n')
    return validated(factories.dataset(project, creator, name=name, location=location))


def node(name="mlu-node-1", devices=8) -> Node:
    found, _created = Node.objects.get_or_create(
        name=name,
        defaults={
            "cpu_millis": 64000,
            "memory_mib": 262144,
            "device_type": DeviceType.MLU,
            "device_count": devices,
        },
    )
    return found


def job_post(
    dataset: Dataset, repo, spec, algorithm_code="sft_lora", model=None, **overrides
) -> dict:
    """The POST of a complete create form; parameters fall back to the schema defaults.
    ``model``: the base model (tiny-llama by default)."""
    algorithm = Algorithm.objects.select_related("scenario").get(code=algorithm_code)
    model = model or PretrainedModel.objects.get(name="tiny-llama")
    data = {
        "name": "sft-run",
        "access": Access.NONE,
        "priority": "20",
        "task_type": algorithm.scenario.task_type,
        "scenario": str(algorithm.scenario_id),
        "algorithm": str(algorithm.pk),
        "pretrained_model": str(model.pk),
        "train_dataset": str(dataset.pk),
        "validation_dataset": "",
        "test_dataset": "",
        "model_repo": str(repo.pk),
        "node_specs": [str(spec.pk)],
        "node_count": "1",
        "node_names": "",
        "pool": "",
        "driver_version": "",
        "duration_preset": "2",
        "duration_custom_hours": "",
        "_shown_algorithm": str(algorithm.pk),
    }
    for name, prop in algorithm.parameters_schema["properties"].items():
        if prop["type"] == "boolean":
            if prop["default"]:
                data[f"param-{name}"] = "on"
        elif "x-model-version" in prop:
            data[f"param-{name}"] = ""  # a choice of model versions, none by default
        else:
            data[f"param-{name}"] = str(prop["default"])
    data.update(overrides)
    return data
