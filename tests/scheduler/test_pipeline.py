"""A job goes the whole way on the embedded defaults: queued, admitted by the
planner, launched as a real `python -m trainer run` process by the local
executor, trained on a tiny model, observed, succeeded, and its model stored as
the repo's next version."""

import json

import pytest

from finetune.models import JobEvent, JobStatus, ModelVersion
from finetune.storage import resolve
from scheduler import admission
from scheduler.executors import get_executor
from tests.realjobs import queued_sft_job, settled

pytestmark = pytest.mark.django_db


@pytest.fixture
def local_executor(settings):
    settings.JINGTIAO_EXECUTOR = "local"
    settings.JINGTIAO_STOP_GRACE_SECONDS = 2
    # Nothing listens there: the trainer's reports fail softly, whatever else runs here.
    settings.JINGTIAO_REPORT_URL = "http://127.0.0.1:9"
    get_executor.cache_clear()
    yield get_executor()
    get_executor.cache_clear()


def test_a_queued_sft_job_trains_on_this_machine_and_stores_its_model(
    project, alice, local_executor
):
    job = queued_sft_job(
        project,
        alice,
        local_executor,
        parameters={"max_steps": 6, "batch_size": 4, "max_length": 128, "logging_steps": 1},
    )
    repo = job.model_repo

    assert admission.run_admission() == [job.pk]
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert "trainer run --spec" in job.run_command

    job = settled(local_executor, job)
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
