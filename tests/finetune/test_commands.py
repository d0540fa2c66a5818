from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from finetune.models import (
    Algorithm,
    Dataset,
    Job,
    JobEvent,
    JobStatus,
    JobUserObjectPermission,
    ModelRepo,
    PretrainedModel,
)
from finetune.storage import job_dir
from tests import factories

pytestmark = pytest.mark.django_db


def _call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


# --- seed_demo -----------------------------------------------------------------------


def _counts() -> dict[str, int]:
    from django.contrib.auth import get_user_model

    from accounts.models import Membership, Project
    from scheduler.models import Node, NodeSpec

    models = [
        get_user_model(),
        Project,
        Membership,
        NodeSpec,
        Node,
        PretrainedModel,
        Dataset,
        ModelRepo,
        Algorithm,
    ]
    return {model.__name__: model.objects.count() for model in models}


def test_seed_demo_builds_a_project_that_can_train_and_is_idempotent(settings):
    from django.contrib.auth import authenticate

    from accounts.models import Project
    from finetune.storage import resolve
    from trainer.datavalidation import validate

    output = _call("seed_demo")
    for login in ("admin", "alice", "bob", "charlie"):
        assert f"{login}  " in output
    from django.test import RequestFactory

    login = RequestFactory().post("/accounts/login/")
    assert authenticate(login, username="alice", password="jingtiao-alice") is not None
    demo = Project.objects.get(name="demo")
    assert set(demo.members.values_list("username", flat=True)) == {"admin", "alice", "bob"}

    # every scenario has a valid data set and a model repo, and both base models exist
    for code in ("llm/pretrain", "llm/sft", "llm/reward_model", "llm/rl", "t2i/finetune"):
        data = Dataset.objects.filter(project=demo, scenario__code=code)
        assert data.exists(), code
        for dataset in data:
            assert dataset.validation_status == Dataset.Validation.VALID
            assert validate(code, str(resolve(dataset.location))).ok
        assert ModelRepo.objects.filter(project=demo, scenario__code=code).exists()
    for model in PretrainedModel.objects.all():
        folder = resolve(model.location)
        assert (folder / "config.json").exists() or (folder / "model_index.json").exists()
    assert Algorithm.objects.filter(enabled=True).count() >= 7

    first = _counts()
    _call("seed_demo", "--quiet-passwords")
    assert _counts() == first


# --- cleanup_jobs -----------------------------------------------------------------------


@pytest.fixture
def finished_jobs(project, other_project, alice, charlie):
    """Old and recent jobs in every status, each with a folder on disk."""
    now = timezone.now()
    old = now - timedelta(days=40)
    jobs = {}
    for status in JobStatus.values:
        for age, finished in (("old", old), ("new", now)):
            job = factories.job(project, alice, status=status, name=f"{status}-{age}")
            if status not in (JobStatus.QUEUED, JobStatus.RUNNING):
                Job.objects.filter(pk=job.pk).update(finished_at=finished)
            JobEvent.objects.create(job=job, kind=JobEvent.Kind.NOTE, message="x")
            job_dir(job.pk).mkdir(parents=True)
            (job_dir(job.pk) / "train.log").write_text("log")
            jobs[job.name] = job
    other = factories.job(other_project, charlie, status=JobStatus.FAILED, name="other-old")
    Job.objects.filter(pk=other.pk).update(finished_at=old)
    jobs["other-old"] = other
    return jobs


def test_dry_run_counts_and_changes_nothing(finished_jobs):
    before = (Job.objects.count(), JobUserObjectPermission.objects.count())
    output = _call("cleanup_jobs", "--dry-run")
    assert "would delete 5 jobs" in output
    assert "  failed: 2" in output  # one in each project
    assert (Job.objects.count(), JobUserObjectPermission.objects.count()) == before
    with_folders = [job for name, job in finished_jobs.items() if name != "other-old"]
    assert all(job_dir(job.pk).exists() for job in with_folders)


def test_it_deletes_old_finished_jobs_with_their_folders_events_and_grants(finished_jobs):
    output = _call("cleanup_jobs", "--batch-size", "2")
    assert "deleted 5 jobs" in output
    assert "job folders removed: 4" in output  # other-old had no folder
    remaining = set(Job.objects.values_list("name", flat=True))
    assert remaining == {
        "queued-old",
        "queued-new",
        "running-old",
        "running-new",
        "failed-new",
        "stopped-new",
        "expired-new",
        "succeeded-new",
    }
    deleted = [job for name, job in finished_jobs.items() if name not in remaining]
    for job in deleted:
        assert not job_dir(job.pk).exists()
        assert not JobEvent.objects.filter(job_id=job.pk).exists()
        assert not JobUserObjectPermission.objects.filter(content_object_id=job.pk).exists()
    for name in remaining:
        assert job_dir(finished_jobs[name].pk).exists()


def test_it_removes_the_folders_of_jobs_deleted_from_the_pages(finished_jobs):
    """A job deleted while the broker was down keeps its folder (spec with its token,
    logs): the clean-up removes it, and leaves every folder whose job still exists."""
    gone = factories.job(finished_jobs["failed-new"].project, finished_jobs["failed-new"].creator)
    job_dir(gone.pk).mkdir(parents=True)
    (job_dir(gone.pk) / "spec.json").write_text('{"report": {"token": "t"}}')
    Job.objects.filter(pk=gone.pk).delete()
    output = _call("cleanup_jobs", "--status", "stopped", "--older-than", "1000")
    assert "deleted 0 jobs" in output
    assert "job folders removed: 1" in output
    assert not job_dir(gone.pk).exists()
    assert all(
        job_dir(job.pk).exists() for name, job in finished_jobs.items() if name != "other-old"
    )


def test_it_filters_by_status_and_project(finished_jobs):
    output = _call("cleanup_jobs", "--status", "failed", "--project", "research")
    assert "deleted 1 jobs" in output
    assert not Job.objects.filter(name="other-old").exists()
    assert Job.objects.filter(name="failed-old").exists()


def test_zero_days_includes_jobs_that_just_finished(finished_jobs):
    _call("cleanup_jobs", "--older-than", "0", "--project", "demo")
    assert set(Job.objects.filter(project__name="demo").values_list("status", flat=True)) == {
        "queued",
        "running",
    }


def test_a_rerun_after_an_interruption_finishes_the_work(finished_jobs, monkeypatch):
    from finetune.management.commands import cleanup_jobs

    real_remove = cleanup_jobs.remove_job_dir
    calls = {"n": 0}

    def remove_then_die(job_id):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_remove(job_id)

    monkeypatch.setattr(cleanup_jobs, "remove_job_dir", remove_then_die)
    with pytest.raises(KeyboardInterrupt):
        _call("cleanup_jobs", "--batch-size", "2")
    monkeypatch.setattr(cleanup_jobs, "remove_job_dir", real_remove)
    output = _call("cleanup_jobs")
    assert "deleted 3 jobs" in output
    assert Job.objects.filter(finished_at__lt=timezone.now() - timedelta(days=30)).count() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "running"], "Cannot clean up jobs in status running"),
        (["--project", "nope"], "No such project: nope"),
        (["--older-than", "-1"], "--older-than must not be negative"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
    ],
)
def test_it_refuses_bad_arguments_clearly(finished_jobs, args, message):
    with pytest.raises(CommandError, match=message):
        _call("cleanup_jobs", *args)
    assert Job.objects.count() == len(finished_jobs)


def test_seed_demo_moves_the_demo_data_of_the_old_layout_into_the_project_area(settings):
    """A demo seeded before project areas (datasets/demo/, repos/demo/) is moved into
    datasets/<id>/ and repos/<id>/, versions included, so its jobs may use it."""
    from accounts.models import Project
    from finetune.models import Dataset, ModelRepo, ModelVersion
    from finetune.storage import resolve

    _call("seed_demo")
    demo = Project.objects.get(name="demo")
    chat = Dataset.objects.get(project=demo, name="sft-chat-train")
    repo = ModelRepo.objects.get(project=demo, name="sft-models")
    for row, kind in ((chat, "datasets"), (repo, "repos")):
        legacy = f"{kind}/demo/{row.name}"
        resolve(legacy).parent.mkdir(parents=True, exist_ok=True)
        resolve(row.location).rename(resolve(legacy))
        type(row).objects.filter(pk=row.pk).update(location=legacy)
    (resolve("repos/demo/sft-models") / "job-1").mkdir()
    ModelVersion.objects.create(repo=repo, number=1, location="repos/demo/sft-models/job-1")

    _call("seed_demo")

    chat.refresh_from_db()
    repo.refresh_from_db()
    assert chat.location == f"datasets/{demo.pk}/sft-chat-train"
    assert (resolve(chat.location) / "data.jsonl").is_file()
    assert repo.location == f"repos/{demo.pk}/sft-models"
    assert repo.versions.get().location == f"repos/{demo.pk}/sft-models/job-1"
    assert resolve(repo.versions.get().location).is_dir()
