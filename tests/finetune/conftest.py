"""A running job with a known report token, as launching leaves it (F7.1 tests)."""

import json
from contextlib import contextmanager

import pytest

from finetune.models import Job, JobStatus, PretrainedModel
from finetune.states import transition
from finetune.storage import resolve
from scheduler.launching import hash_token
from scheduler.models import DeviceType, NodeSpec
from tests import factories
from tests.finetune import pages_support as support
from tests.trainer.test_trainer_memory import QWEN2_7B

REPORT_TOKEN = "s3cret-token"


@pytest.fixture
def signals():
    """The (job id, change) pairs job_changed announces from here on."""
    from finetune.signals import job_changed

    received: list[tuple[int, str]] = []

    def listen(sender, job_id, change, **kwargs):
        received.append((job_id, change))

    job_changed.connect(listen)
    yield received
    job_changed.disconnect(listen)


@pytest.fixture
def data_worker(django_capture_on_commit_callbacks):
    """``with data_worker():`` carries out, as the block ends, the validations its
    requests asked for (and what they queue in turn), as the data worker would."""
    from config.celery import app

    @contextmanager
    def working():
        app.conf.task_always_eager = True
        try:
            with django_capture_on_commit_callbacks(execute=True):
                yield
        finally:
            app.conf.task_always_eager = False

    return working


@pytest.fixture
def running(project, alice):
    job = factories.job(project, alice)
    transition(job, JobStatus.RUNNING)
    Job.objects.filter(pk=job.pk).update(report_token_hash=hash_token(REPORT_TOKEN))
    job.refresh_from_db()
    return job


@pytest.fixture
def ready(project, alice):
    """What a valid create form needs: the catalog, alice's data set and repo, a spec and
    a node to run on."""
    support.catalog()
    dataset = support.good_dataset(project, alice)
    repo = factories.model_repo(project, alice)
    spec = factories.node_spec()
    support.node()
    return dataset, repo, spec


@pytest.fixture
def qwen7b():
    """A 7.6 B-parameter base model: its config.json is all the estimate reads."""
    folder = resolve("models/qwen2-7b")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(QWEN2_7B))
    return PretrainedModel.objects.create(
        name="qwen2-7b", task_type="llm", family="qwen", location="models/qwen2-7b"
    )


@pytest.fixture
def h100():
    support.node("gpu-node-1", devices=8)
    from scheduler.models import Node

    Node.objects.filter(name="gpu-node-1").update(device_type=DeviceType.GPU)
    return NodeSpec.objects.create(
        name="h100-x8",
        cpu_millis=64000,
        memory_mib=262144,
        device_type=DeviceType.GPU,
        device_count=8,
        device_model="H100-80G",
        device_memory_gib=80,
    )
