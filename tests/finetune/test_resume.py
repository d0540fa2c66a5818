"""Resume a stopped job from its last checkpoint (issue 15, item 6), through the pages and
the real trainer: a job stopped at step 6 of 12 shows its checkpoints; a clone "resume
from step 6" goes on to step 12, its loss curve one curve from step 1 to 12 (the reports
go to the live server's report endpoint, as a launched trainer's do)."""

from __future__ import annotations

import os
import shutil
import signal
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import Access
from finetune import access
from finetune.models import Job, JobStatus, MetricPoint
from finetune.reports import hash_token
from finetune.services import checkpoints
from finetune.states import transition
from finetune.storage import job_dir
from scheduler.executors.base import ExecutorError
from scheduler.launching import trainer_spec
from tests import realjobs
from tests.finetune import pages_support as support

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

PARAMETERS = {
    "max_steps": 12,
    "save_steps": 3,
    "logging_steps": 1,
    "batch_size": 4,
    "max_length": 64,
    "eval_strategy": "steps",
    "eval_steps": 100,
    "learning_rate": 5e-3,
    "warmup_ratio": 0.0,
}


def _run(job: Job, live_server, settings, callbacks=()) -> int:
    """Run the job's trainer in this process as a launch would, its reports to the server."""
    import json

    from trainer.runner import run

    settings.JINGTIAO_REPORT_URL = live_server.url
    settings.JINGTIAO_REPORT_INTERVAL_SECONDS = 1
    token = f"token-{job.pk}"
    Job.objects.filter(pk=job.pk).update(report_token_hash=hash_token(token))
    spec = trainer_spec(job, token)
    path = job_dir(job.pk) / "spec.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec))
    try:
        return run(str(path), extra_callbacks=list(callbacks))
    finally:
        path.unlink()


class StopAfterSaving:
    """The platform's stop (SIGTERM) just after the checkpoint of ``step``."""

    def __new__(cls, step: int):
        from transformers import TrainerCallback

        class Stop(TrainerCallback):
            def on_save(self, args, state, control, **kwargs):
                if state.global_step == step:
                    os.kill(os.getpid(), signal.SIGTERM)

        return Stop()


@pytest.fixture
def stopped(project, alice, settings, live_server):
    """A real tiny LoRA job stopped at step 6 of 12, its checkpoints at 3 and 6 kept."""
    from finetune.catalog_sync import sync_catalog
    from scheduler.executors.local import LocalExecutor

    sync_catalog()
    job = realjobs.queued_sft_job(project, alice, LocalExecutor(), parameters=PARAMETERS)
    access.set_access(job, Access.READ_ONLY)
    transition(job, JobStatus.RUNNING)
    assert _run(job, live_server, settings, [StopAfterSaving(6)]) == 143
    transition(job, JobStatus.STOPPED, reason="stopped by its creator")
    job.refresh_from_db()
    return job


def _steps(job: Job) -> list[int]:
    return list(
        MetricPoint.objects.filter(job=job, loss__isnull=False)
        .order_by("step")
        .values_list("step", flat=True)
    )


def test_a_stopped_job_resumes_from_step_6_and_its_curve_goes_on_to_12(
    client, alice, bob, stopped, settings, live_server
):
    assert [c.step for c in checkpoints.checkpoints_of(stopped)] == [3, 6]
    assert _steps(stopped) == [1, 2, 3, 4, 5, 6]
    client.force_login(bob)  # read-only: may clone, so may resume
    page = client.get(reverse("finetune:job_detail", args=[stopped.pk])).content.decode()
    assert 'data-testid="resume-6"' in page and 'data-testid="resume-3"' in page
    clone_url = reverse("finetune:job_clone", args=[stopped.pk])
    form = client.get(clone_url, {"resume": 6}).content.decode()
    assert 'name="resume_from_step" value="6"' in form and 'data-testid="resume-note"' in form
    client.force_login(alice)
    dataset, repo = stopped.train_dataset, stopped.model_repo
    post = support.job_post(dataset, repo, stopped.ordered_node_specs()[0], name="resumed")
    post.update({f"param-{k}": str(v) for k, v in PARAMETERS.items()}, resume_from_step="6")
    answer = client.post(clone_url, post)
    assert answer.status_code == 302, answer.content.decode()[:3000]
    resumed = Job.objects.get(name="resumed")
    assert (resumed.cloned_from, resumed.resume_from_step) == (stopped, 6)
    assert _steps(resumed) == [1, 2, 3, 4, 5, 6]  # the history so far comes along
    assert "checkpoint at step 6" in " ".join(e.text for e in resumed.events.all())

    spec = trainer_spec(resumed, "t")
    assert spec["resume_from"] == str(checkpoints.folder_of(stopped) / "checkpoint-6")
    transition(resumed, JobStatus.RUNNING)
    assert _run(resumed, live_server, settings) == 0
    time.sleep(0.5)
    assert _steps(resumed) == list(range(1, 13))  # one curve, not two starts
    curve = client.get(reverse("finetune:job_metrics", args=[resumed.pk])).json()["training"]
    assert curve["step"] == sorted(set(curve["step"])) and curve["step"][-1] == 12
    detail = client.get(reverse("finetune:job_detail", args=[resumed.pk])).content.decode()
    assert 'data-testid="resumed-from"' in detail


def test_a_resume_that_cannot_go_on_is_refused_with_the_reason(client, alice, stopped):
    client.force_login(alice)
    clone_url = reverse("finetune:job_clone", args=[stopped.pk])
    post = support.job_post(
        stopped.train_dataset, stopped.model_repo, stopped.ordered_node_specs()[0]
    )
    post.update({f"param-{k}": str(v) for k, v in PARAMETERS.items()})

    def refused(**changes) -> str:
        answer = client.post(clone_url, {**post, **changes})
        assert answer.status_code == 400
        return answer.content.decode()

    assert "no checkpoint at step 5" in refused(resume_from_step="5")
    assert "keep its node specs and node count" in refused(resume_from_step="6", node_count="2")
    assert "these changed: lora_rank" in refused(resume_from_step="6", **{"param-lora_rank": "4"})
    created = client.post(reverse("finetune:job_create"), {**post, "resume_from_step": "6"})
    assert "Only a clone of a job can resume it" in created.content.decode()
    # it trains longer, reports and saves at another pace: that may change
    longer = {"param-max_steps": "20", "param-save_steps": "5", "resume_from_step": "6"}
    assert client.post(clone_url, {**post, **longer}).status_code == 302
    assert not Job.objects.filter(status=JobStatus.QUEUED).exclude(resume_from_step=6).exists()


def test_a_checkpoint_gone_before_the_launch_fails_the_job_with_the_reason(alice, stopped, project):
    job = Job.objects.create(
        **{
            f.name: getattr(stopped, f.name)
            for f in Job._meta.concrete_fields
            if f.name not in ("id", "status", "status_reason", "status_said", "finished_at")
        }
        | {"cloned_from": stopped, "resume_from_step": 6, "status": JobStatus.QUEUED}
    )
    shutil.rmtree(checkpoints.folder_of(stopped) / "checkpoint-6")
    with pytest.raises(ExecutorError, match="no longer exists") as raised:
        trainer_spec(job, "t")
    assert not raised.value.transient
    Job.objects.filter(pk=job.pk).update(cloned_from=None)  # the job it resumes, deleted
    job.refresh_from_db()
    with pytest.raises(ExecutorError, match="no longer exists"):
        trainer_spec(job, "t")  # never a silent start from scratch


def test_old_checkpoints_go_and_live_ones_stay(alice, stopped, settings):
    folder = checkpoints.folder_of(stopped).parent
    assert checkpoints.sweep() == 0  # stopped just now: kept
    past = timezone.now() - timedelta(days=settings.JINGTIAO_CHECKPOINT_RETENTION_DAYS + 1)
    Job.objects.filter(pk=stopped.pk).update(finished_at=past)
    orphan = folder.parent / ".job-999999.partial"
    (orphan / "_checkpoints").mkdir(parents=True)
    fresh = folder.parent / ".job-999998.partial"
    fresh.mkdir()
    hour_ago = time.time() - checkpoints.ORPHAN_SECONDS - 5
    os.utime(orphan, (hour_ago, hour_ago))
    assert checkpoints.sweep() == 2
    assert not folder.exists() and not orphan.exists() and fresh.exists()
    assert checkpoints.resumable_checkpoints(Job.objects.get(pk=stopped.pk)) == []
