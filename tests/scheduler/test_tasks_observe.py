"""The Celery tasks that settle, stop and reconcile workloads (kubernetes backend on kmock)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from config.celery import app
from finetune import states
from finetune.models import Job, JobEvent, JobStatus
from finetune.signals import job_changed
from finetune.storage import resolve
from scheduler.executors import get_executor, manifests
from scheduler.launching import launch_job
from scheduler.tasks import observe_running_jobs, reconcile_workloads, stop_workload
from tests.scheduler.conftest import NAMESPACE, placement
from tests.scheduler.test_executor_kubernetes import ago, pod

pytestmark = pytest.mark.django_db
JOBS = "batch/v1/jobs"


@pytest.fixture
def eager():
    """Run what the tasks enqueue at once, retries included."""
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def launched(kube, running_job):
    def make(**fields):
        job = running_job(**fields)
        launch_job(job, placement())
        return job

    return make


def workload_exists(kube, job_id: int) -> bool:
    return manifests.workload_name(job_id) in kube.stored(JOBS)


def test_a_succeeded_workload_succeeds_the_job_and_is_torn_down(
    kube, launched, eager, django_capture_on_commit_callbacks
):
    job = launched()
    output = resolve(job.model_repo.location) / f"job-{job.pk}"
    output.mkdir(parents=True)
    (output / "manifest.json").write_text('{"algorithm": "sft_lora"}')  # the trainer's last write
    kube.put("v1/pods", "p0", pod(job.pk, 0, "Succeeded"))

    with django_capture_on_commit_callbacks(execute=True):
        observe_running_jobs()

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.output_version.number == 1
    assert not workload_exists(kube, job.pk)
    event = job.events.get(kind=JobEvent.Kind.STATUS, to_status=JobStatus.SUCCEEDED)
    assert event.source == JobEvent.Source.CLUSTER


def test_a_workload_that_succeeded_without_a_model_fails_the_job(
    kube, launched, eager, django_capture_on_commit_callbacks
):
    """Exit 0 and no model (the volume mounted elsewhere in the pods): nothing to show,
    so the job fails saying where the model was looked for; no version is made."""
    job = launched()
    kube.put("v1/pods", "p0", pod(job.pk, 0, "Succeeded"))

    with django_capture_on_commit_callbacks(execute=True):
        observe_running_jobs()

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert f"{job.model_repo.location}/job-{job.pk}" in job.status_reason
    assert "data volume" in job.status_reason
    assert job.output_version is None
    assert not workload_exists(kube, job.pk)


def test_an_oom_killed_workload_fails_the_job_with_the_reason_in_words(kube, launched, eager):
    job = launched()
    kube.put(
        "v1/pods",
        "p0",
        pod(
            job.pk,
            0,
            "Failed",
            containerStatuses=[
                {
                    "name": "trainer",
                    "state": {
                        "terminated": {
                            "exitCode": 137,
                            "reason": "OOMKilled",
                            "message": "step 12 loss 1.9",
                        }
                    },
                }
            ],
        ),
    )

    observe_running_jobs()

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.status_reason == "worker 0 was OOMKilled (out of memory, exit code 137)"
    # where it was when it was killed: its last log lines, kept with the event (folded)
    failed = job.events.get(to_status=JobStatus.FAILED)
    assert failed.data["log_excerpt"] == "step 12 loss 1.9"


def test_an_unschedulable_job_goes_back_to_the_queue_in_its_place(kube, launched, settings):
    settings.JINGTIAO_UNSCHEDULABLE_TIMEOUT_SECONDS = 60
    job = launched()
    queued_at = job.queued_at
    stuck = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/2 nodes are available",
    }
    kube.put(
        "v1/pods",
        "p0",
        pod(job.pk, 0, "Pending", conditions=[{**stuck, "lastTransitionTime": ago(30)}]),
    )

    observe_running_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING  # not yet past the timeout

    kube.put(
        "v1/pods",
        "p0",
        pod(job.pk, 0, "Pending", conditions=[{**stuck, "lastTransitionTime": ago(90)}]),
    )
    observe_running_jobs()

    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job.queued_at == queued_at
    assert "0/2 nodes are available" in job.status_reason
    assert not workload_exists(kube, job.pk)


def test_an_evicted_worker_puts_the_job_back_in_its_place_at_once(kube, launched):
    """Eviction (node pressure, preemption) is no fault of the job (issue 12, item 8)."""
    job = launched()
    queued_at = job.queued_at
    evicted = {"reason": "Evicted", "message": "The node was low on memory."}
    kube.put("v1/pods", "p0", pod(job.pk, 0, "Failed", **evicted))

    observe_running_jobs()

    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.queued_at == queued_at
    assert "The node was low on memory." in job.status_reason
    assert not workload_exists(kube, job.pk)


def test_a_worker_on_a_lost_node_requeues_the_job_after_the_grace(kube, launched, settings):
    settings.JINGTIAO_LOST_GRACE_SECONDS = 60
    job = launched()

    def unknown_since(seconds: int) -> dict:
        ready = {"type": "Ready", "status": "Unknown", "lastTransitionTime": ago(seconds)}
        return pod(job.pk, 0, "Unknown", conditions=[ready])

    kube.put("v1/pods", "p0", unknown_since(20))
    observe_running_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING  # the node may answer again

    kube.put("v1/pods", "p0", unknown_since(90))
    observe_running_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert "node-0 stopped answering" in job.status_reason
    assert not workload_exists(kube, job.pk)


def test_a_lost_node_that_cannot_hand_over_its_logs_still_requeues_the_job(
    kube, launched, settings
):
    import kmock

    settings.JINGTIAO_LOST_GRACE_SECONDS = 60
    job = launched()
    ready = {"type": "Ready", "status": "Unknown", "lastTransitionTime": ago(300)}
    kube.put("v1/pods", "p0", pod(job.pk, 0, "Unknown", conditions=[ready]))
    kube.react("GET", "/log", kmock.KubernetesError(500, "InternalError", "node unreachable"))

    observe_running_jobs()

    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert not workload_exists(kube, job.pk)


def test_a_job_without_pods_for_long_is_requeued(kube, launched, settings):
    settings.JINGTIAO_LOST_GRACE_SECONDS = 60
    job = launched()
    name = manifests.workload_name(job.pk)
    stored = kube.stored(JOBS)[name]
    stored["metadata"]["creationTimestamp"] = ago(20)
    kube.put(JOBS, name, stored)
    observe_running_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING

    stored["metadata"]["creationTimestamp"] = ago(300)
    kube.put(JOBS, name, stored)
    observe_running_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert "has no pods" in job.status_reason


def test_a_job_whose_workload_vanished_fails_after_the_grace(kube, running_job, settings):
    settings.JINGTIAO_MISSING_GRACE_SECONDS = 10
    fresh = running_job()
    old = running_job()
    never_launched = running_job()
    still_launching = running_job()
    for job in (fresh, old):
        JobEvent.objects.create(job=job, kind=JobEvent.Kind.LAUNCH, message="launched")
    now = timezone.now()
    five_minutes_ago = now - timedelta(minutes=5)
    Job.objects.filter(pk__in=[old.pk, never_launched.pk]).update(
        started_at=five_minutes_ago, launch_beat_at=now - timedelta(seconds=11)
    )
    # admitted long ago, but its launcher still beats: its turn in a long pass has not come
    Job.objects.filter(pk=still_launching.pk).update(
        started_at=five_minutes_ago, launch_beat_at=now - timedelta(seconds=3)
    )

    observe_running_jobs()

    for job in (fresh, old, never_launched, still_launching):
        job.refresh_from_db()
    assert fresh.status == JobStatus.RUNNING
    assert still_launching.status == JobStatus.RUNNING
    assert old.status == JobStatus.FAILED and "disappeared" in old.status_reason
    # admitted, but the worker died before launching it: nothing ran, so it is requeued
    # as soon as its launcher's beat is a grace old, not minutes later
    assert never_launched.status == JobStatus.QUEUED
    assert "never launched" in never_launched.status_reason


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_launching_worker_beats_for_the_jobs_it_has_not_launched_yet(running_job, monkeypatch):
    from scheduler import launching

    monkeypatch.setattr(launching, "BEAT_SECONDS", 0.05)
    waiting, launched = running_job(), running_job()
    long_ago = timezone.now() - timedelta(hours=1)
    Job.objects.filter(pk__in=[waiting.pk, launched.pk]).update(launch_beat_at=long_ago)
    with launching.LaunchBeat([waiting.pk, launched.pk]) as beat:
        beat.launched(launched.pk)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if Job.objects.get(pk=waiting.pk).launch_beat_at > long_ago:
                break
            time.sleep(0.05)
    assert Job.objects.get(pk=waiting.pk).launch_beat_at > timezone.now() - timedelta(seconds=5)
    assert Job.objects.get(pk=launched.pk).launch_beat_at == long_ago


def test_an_api_outage_leaves_running_jobs_alone(kube, launched):
    job = launched()
    kube.fail_next("GET", "/jobs")

    observe_running_jobs()

    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING


def test_stopping_a_job_tears_its_workload_down_through_the_signal(
    kube, launched, eager, django_capture_on_commit_callbacks
):
    job = launched()

    with django_capture_on_commit_callbacks(execute=True):
        states.transition(job, JobStatus.STOPPED, reason="by alice")
        job_changed.send(sender=Job, job_id=job.pk, change="stopped")

    assert not workload_exists(kube, job.pk)
    assert kube.stored("v1/secrets") == {}


def test_stop_is_retried_after_a_server_error(kube, launched, eager):
    job = launched()
    states.transition(job, JobStatus.STOPPED)
    kube.fail_next("DELETE", "/jobs/")

    stop_workload.delay(job.pk)

    assert not workload_exists(kube, job.pk)
    assert len(kube.requests("DELETE", f"/jobs/{manifests.workload_name(job.pk)}")) == 2


def test_stop_leaves_a_job_that_runs_again_alone(kube, launched):
    job = launched()

    stop_workload(job.pk)

    assert workload_exists(kube, job.pk)


def test_reconcile_removes_workloads_of_ended_and_deleted_jobs_only(kube, launched, eager):
    running = launched()
    ended = launched()
    states.transition(ended, JobStatus.FAILED, reason="test")
    deleted = launched()
    Job.objects.filter(pk=deleted.pk).delete()
    # A queued job's workload: a relaunch replaces it, so reconcile leaves it alone.
    queued = launched()
    Job.objects.filter(pk=queued.pk).update(status=JobStatus.QUEUED)

    reconcile_workloads()

    names = set(kube.stored(JOBS))
    assert names == {manifests.workload_name(running.pk), manifests.workload_name(queued.pk)}
    assert (
        kube.stored(JOBS)[manifests.workload_name(running.pk)]["metadata"]["namespace"] == NAMESPACE
    )


def test_an_ended_jobs_logs_are_kept_before_its_pods_go(kube, launched, eager):
    from finetune.storage import job_dir

    job = launched()
    kube.put("v1/pods", "p0", pod(job.pk, 0, "Failed"))
    kube.react("GET", "/log", b"Traceback: the end\n")
    states.transition(job, JobStatus.FAILED, reason="test")

    stop_workload.delay(job.pk)

    assert not workload_exists(kube, job.pk)
    assert (job_dir(job.pk) / "worker-0.log").read_text() == "Traceback: the end\n"


def test_a_log_that_can_never_be_read_does_not_keep_the_pods_for_ever(kube, launched, eager):
    import kmock

    from scheduler.tasks import MAX_RETRIES

    job = launched()
    kube.put("v1/pods", "p0", pod(job.pk, 0, "Failed"))
    kube.react("GET", "/log", kmock.KubernetesError(503, "Unavailable", "log backend down"))
    states.transition(job, JobStatus.FAILED, reason="test")

    stop_workload.delay(job.pk)

    assert not workload_exists(kube, job.pk)
    assert len(kube.requests("GET", "/log")) == MAX_RETRIES  # the last try goes without


def test_a_deleted_jobs_workload_is_torn_down_without_reading_its_logs(kube, launched, eager):
    job = launched()
    kube.put("v1/pods", "p0", pod(job.pk, 0, "Running"))
    Job.objects.filter(pk=job.pk).delete()

    stop_workload.delay(job.pk)

    assert not workload_exists(kube, job.pk) and kube.requests("GET", "/log") == []


def test_a_relaunched_job_shows_and_keeps_the_logs_of_its_new_pods(kube, launched, eager):
    """The archive kept when a job was requeued belongs to that launch (issue 12, item 10):
    after the relaunch the logs come from the new pods, and the final stop keeps them."""
    from finetune.storage import job_dir

    job = launched()
    kube.put("v1/pods", "p0", pod(job.pk, 0, "Failed"))
    kube.react("GET", "/log", b"first attempt\n", times=1)
    states.transition(job, JobStatus.QUEUED, reason="requeued")
    stop_workload.delay(job.pk)
    assert (job_dir(job.pk) / "worker-0.log").read_text() == "first attempt\n"

    states.transition(job, JobStatus.RUNNING)
    launch_job(job, placement())
    second = pod(job.pk, 0, "Running")
    second["metadata"]["name"] = f"{manifests.workload_name(job.pk)}-0-fghij"
    kube.put("v1/pods", "p0", second)  # the first pod is gone; its successor runs
    kube.react("GET", "-0-fghij/log", b"second attempt\n")
    executor = get_executor()
    assert "second attempt" in executor.logs(job.pk, tail=True)[0].text

    states.transition(job, JobStatus.FAILED, reason="test")
    stop_workload.delay(job.pk)
    assert (job_dir(job.pk) / "worker-0.log").read_text() == "second attempt\n"


def _admit_and_launch(job) -> bool:
    from scheduler import admission

    states.transition(job, JobStatus.RUNNING)
    return admission.launch(admission.Admitted(job.pk, placement()))


def _the_one_workload(kube, job) -> dict:
    job.refresh_from_db()
    assert list(kube.stored(JOBS)) == [manifests.workload_name(job.pk)]
    workload = kube.stored(JOBS)[manifests.workload_name(job.pk)]
    assert workload["metadata"]["annotations"][manifests.LAUNCH_ANNOTATION] == (
        job.report_token_hash
    )
    return workload


def test_a_create_whose_answer_was_lost_ends_with_one_workload_of_the_last_launch(
    kube, running_job
):
    """The API server created the Job, but the answer never came (issue 12, item 8): the
    job is requeued and relaunched with a new token; no workload of the first launch
    survives, and the one that runs is the relaunch's."""
    job = running_job()
    Job.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED)
    job.refresh_from_db()
    kube.fail_next("POST", "/jobs", sleep=2)  # stored after 2 s; the client gave up at 1 s

    assert _admit_and_launch(job) is False
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and "will retry" in job.status_reason
    time.sleep(1.5)  # the first create lands now, after its teardown found nothing

    # the next pass finds the first launch's Job and clears it, then the one after launches
    launched = _admit_and_launch(job) or _admit_and_launch(job)
    assert launched
    assert _the_one_workload(kube, job)["spec"]["suspend"] is False


def test_a_resume_whose_answer_was_lost_is_torn_down_before_the_job_is_requeued(kube, running_job):
    job = running_job()
    Job.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED)
    job.refresh_from_db()
    name = manifests.workload_name(job.pk)
    kube.fail_next("PATCH", f"/jobs/{name}", sleep=2)  # resumed, but the answer is lost

    assert _admit_and_launch(job) is False
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    time.sleep(1.5)
    # the resumed workload of a job that waits in the queue would train unseen: it went
    assert not workload_exists(kube, job.pk) or (
        kube.stored(JOBS)[name]["metadata"]["annotations"][manifests.LAUNCH_ANNOTATION]
        != job.report_token_hash
    )
    launched = _admit_and_launch(job) or _admit_and_launch(job)
    assert launched
    _the_one_workload(kube, job)


def test_a_job_the_cluster_keeps_giving_back_fails_in_the_end(kube, running_job, settings):
    settings.JINGTIAO_MAX_REQUEUES = 2
    job = running_job()
    Job.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED)
    job.refresh_from_db()
    evicted = {"reason": "Evicted", "message": "The node was low on memory."}
    outcomes = []
    for _attempt in range(3):
        assert _admit_and_launch(job)
        kube.put("v1/pods", "p0", pod(job.pk, 0, "Failed", **evicted))
        observe_running_jobs()
        job.refresh_from_db()
        outcomes.append(job.status)
        kube.emulator.objects.clear()
    assert outcomes == [JobStatus.QUEUED, JobStatus.QUEUED, JobStatus.FAILED]
    assert "gave it back 2 times already" in job.status_reason
    assert "The node was low on memory." in job.status_reason


def test_a_job_an_operator_requeues_is_not_failed_by_its_dying_workers(kube, launched):
    """The teardown of a requeue kills the workers; the observe pass meanwhile must not
    settle the job as failed from their exit (issue 12, item 10)."""
    job = launched()
    Job.objects.filter(pk=job.pk).update(requeue_requested_at=timezone.now())
    dying = {"containerStatuses": [{"name": "trainer", "state": {"terminated": {"exitCode": 143}}}]}
    kube.put("v1/pods", "p0", pod(job.pk, 0, "Failed", **dying))

    observe_running_jobs()

    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING  # the requeue task is on it


def test_a_requeue_whose_task_never_came_is_carried_out_by_the_observe_pass(
    kube, launched, settings
):
    job = launched()
    asked = timezone.now() - timedelta(seconds=settings.JINGTIAO_STOP_GRACE_SECONDS + 180)
    Job.objects.filter(pk=job.pk).update(requeue_requested_at=asked)

    observe_running_jobs()

    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.status_reason == "requeued by an operator"
    assert not workload_exists(kube, job.pk)
