"""Start an admitted job's workload: the trainer spec, the report token, the run command.

Admission calls `launch_job` for each job the planner starts now. It raises
ExecutorError as the backend does: a transient one leaves the job queued for
the next pass (the launch is idempotent, so that pass cannot duplicate it), a
permanent one is for the caller to fail the job with.

Where the model goes: `<model repo location>/job-<job id>`, one folder per
job, so two jobs saving into the same repo never meet, and a job relaunched
after requeueing writes to the same place (the trainer clears its own
half-written staging folder). The version number is given when the job
succeeds (scheduler/settling.py).
"""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from config import failpoints
from finetune import storage
from finetune.models import Job, JobEvent, JobStatus, ModelVersion
from finetune.reports import hash_token
from finetune.services import checkpoints
from finetune.services.data import version_parameters, version_ref
from finetune.storage import job_output, remove_job_dir, resolve
from scheduler.executors import commands, get_executor
from scheduler.executors.base import ExecutorError, LaunchRequest, Placement
from scheduler.models import Node, NodeSpec

logger = logging.getLogger(__name__)
# How often a worker launching admitted jobs stamps them as still being launched.
BEAT_SECONDS = 2.0


def output_dir(job: Job) -> str:
    return str(resolve(job_output(job.model_repo.location, job.pk)))


def report_url(job_id: int | str) -> str:
    return f"{settings.JINGTIAO_REPORT_URL.rstrip('/')}/api/jobs/{job_id}/report/"


def trainer_spec(job: Job, token: str) -> dict[str, Any]:
    """The JSON `python -m trainer run --spec` reads (trainer/spec.py)."""

    def location(dataset) -> str | None:
        if dataset is None:
            return None
        if not storage.is_within(dataset.location, storage.readable_areas(job.project_id)):
            raise ExecutorError(
                f"the data set {dataset.name!r} lies outside its project's folders", transient=False
            )
        return str(resolve(dataset.location))

    if not storage.is_within(job.model_repo.location, storage.writable_areas(job.project_id)):
        raise ExecutorError(
            f"the save-model address {job.model_repo.name!r} lies outside its project's folder",
            transient=False,
        )
    return {
        "job_id": job.pk,
        "scenario": job.scenario.code,
        "algorithm": job.algorithm.code,
        "parameters": trainer_parameters(job),
        "base_model": str(resolve(job.pretrained_model.location)),
        "train_data": location(job.train_dataset),
        "validation_data": location(job.validation_dataset),
        "test_data": location(job.test_dataset),
        "output_dir": output_dir(job),
        "resume_from": _resume_from(job),
        "report": {
            "url": report_url(job.pk),
            "token": token,
            "interval": settings.JINGTIAO_REPORT_INTERVAL_SECONDS,
            "sample_seconds": settings.JINGTIAO_RESOURCE_SAMPLE_SECONDS,
        },
    }


def _resume_from(job: Job) -> str | None:
    """The checkpoint a resumed job goes on from (finetune/services/checkpoints.py)."""
    found = checkpoints.resume_path(job)
    if found == "":
        raise ExecutorError(
            f"the checkpoint at step {job.resume_from_step} of job {job.cloned_from_id} that "
            "it resumes from no longer exists",
            transient=False,
        )
    return found


def trainer_parameters(job: Job) -> dict[str, Any]:
    """The job's parameters as the trainer takes them: a model version the job refers
    to (`{"model_version": id}`, checked when the job was created) becomes its folder."""
    parameters = dict(job.parameters)
    for name in version_parameters(job.algorithm.parameters_schema):
        ref = version_ref(parameters.get(name))
        if ref is None:
            if parameters.get(name) not in (None, ""):  # a path typed before versions
                raise ExecutorError(
                    f"{name} must name a model version, not a path", transient=False
                )
            continue
        version = ModelVersion.objects.filter(pk=ref, repo__project_id=job.project_id).first()
        if version is None or not storage.is_within(
            version.location, storage.writable_areas(job.project_id)
        ):
            raise ExecutorError(
                f"the model version {ref} that {name} names no longer exists", transient=False
            )
        parameters[name] = str(resolve(version.location))
    return parameters


#: What the preview shows where the launch will put values it cannot know yet.
NOT_YET = "…"


def preview(job: Job, spec: NodeSpec, node_count: int) -> tuple[dict[str, Any], str]:
    """运行配置预览: the spec the trainer will read and the command each node will run,
    for an unsaved job (a draft) on `spec` x `node_count`; what only the launch knows
    (the job's number, the report token, the nodes) is shown as `NOT_YET`.
    Raises ExecutorError as the launch would (a path outside the project)."""
    found = trainer_spec(job, token=NOT_YET)
    found["job_id"] = NOT_YET
    found["output_dir"] = str(resolve(job_output(job.model_repo.location, NOT_YET)))
    found["report"]["url"] = report_url(NOT_YET)
    placement = Placement.on(spec, [f"node-{rank}" for rank in range(node_count)])
    trainer = ["python", "-m", "trainer", "run", "--spec", "spec.json"]
    argv = commands.node_command(
        placement,
        trainer,
        python="python",
        node_rank="$NODE_RANK",
        master_addr="$MASTER_ADDR",
        master_port="$MASTER_PORT",
    )
    return found, commands.shown(argv)


LAUNCH_RELATED = (
    "scenario",
    "algorithm",
    "pretrained_model",
    "train_dataset",
    "validation_dataset",
    "test_dataset",
    "model_repo",
    "pool",
)


def launch_job(job: Job, placement: Placement) -> bool:
    """Build the spec, record the command and the token's hash, and start the workers.

    A stop or a delete may commit while the workers start: the status is read again
    under the row's lock once they are spawned, and a job no longer running has its
    workers torn down at once (False). The LAUNCH event is written only for a launch
    that stands, so it never follows the job's STOPPED."""
    executor = get_executor()
    token = secrets.token_urlsafe(32)
    request = LaunchRequest(
        job_id=job.pk,
        placement=placement,
        trainer_spec=trainer_spec(job, token),
        report_token=token,
        pool_taint=pool_taint(job, placement),
    )
    command = executor.run_command(request)
    # The hash is stored before the workers start, so their first report is accepted.
    Job.objects.filter(pk=job.pk).update(report_token_hash=hash_token(token), run_command=command)
    clear_abandoned_output(job)
    executor.launch(request)
    failpoints.failpoint("launch.after_record")
    with transaction.atomic():
        now = (
            Job.objects.select_for_update().filter(pk=job.pk).values("status", "report_token_hash")
        )
        found = now.first()
        if found is not None and found["report_token_hash"] != hash_token(token):
            # Launched again since (a stop, then a new admission): the newer launch
            # replaced these workers, or its own teardown ends them. Touch nothing.
            return False
        if found is not None and found["status"] == JobStatus.RUNNING:
            Job.objects.filter(pk=job.pk).update(launch_beat_at=timezone.now())
            JobEvent.objects.create(
                job_id=job.pk,
                kind=JobEvent.Kind.LAUNCH,
                message=command,
                data={
                    "executor": executor.name,
                    "nodes": list(placement.nodes),
                    "spec_id": placement.spec_id,
                    "device_ids": {node: list(ids) for node, ids in placement.device_ids.items()},
                },
            )
            return True
    logger.info("job %s ended while its workers started: tearing them down", job.pk)
    executor.stop(job.pk, keep_logs=False)
    if found is None:  # deleted meanwhile: its folder (the spec holds the token) goes too
        remove_job_dir(job.pk)
    return False


class LaunchBeat:
    """While a worker launches the jobs one admission pass admitted, a thread stamps
    those not yet launched (`Job.launch_beat_at`) every BEAT_SECONDS.

    Admission stamps them first, in the transaction that admits them. A job RUNNING
    with no workload whose stamp is older than JINGTIAO_MISSING_GRACE_SECONDS was left
    by a launcher that died (scheduler/settling.py): it is requeued at once, instead
    of after a fixed time that would have to cover the slowest launch.
    """

    def __init__(self, job_ids: Iterable[int]) -> None:
        self._waiting = set(job_ids)
        self._guard = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="launch-beat", daemon=True)

    def __enter__(self) -> LaunchBeat:
        if self._waiting:
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def launched(self, job_id: int) -> None:
        """The job's launch ended, one way or the other: no more stamps for it."""
        with self._guard:
            self._waiting.discard(job_id)

    def _beat(self) -> None:
        try:
            while not self._done.wait(BEAT_SECONDS):
                with self._guard:
                    waiting = list(self._waiting)
                if not waiting:
                    continue
                try:
                    Job.objects.filter(pk__in=waiting, status=JobStatus.RUNNING).update(
                        launch_beat_at=timezone.now()
                    )
                except DatabaseError as exc:  # the next beat tries again
                    logger.warning("launch beat not written: %s", exc)
        finally:
            connection.close()  # this thread's own connection


def clear_abandoned_output(job: Job) -> None:
    """A job launched again starts from an empty output folder. What is there was left
    by an attempt the platform gave up (requeued while it ran, or its launcher died):
    no version was made of it, since a job with a version has succeeded for good."""
    location = job_output(job.model_repo.location, job.pk)
    folder = resolve(location)
    if folder.exists() and not ModelVersion.objects.filter(location=location).exists():
        logger.info("job %s: clearing what an earlier attempt left in %s", job.pk, location)
        shutil.rmtree(folder, ignore_errors=True)


def pool_taint(job: Job, placement: Placement) -> str:
    """The taint to tolerate: the job's pool's, else that of the pool its nodes are in
    (a job without a pool may still land on the nodes of a shared, tainted pool)."""
    if job.pool and job.pool.taint:
        return job.pool.taint
    taints = (
        Node.objects.filter(name__in=placement.nodes, pool__isnull=False)
        .exclude(pool__taint="")
        .values_list("pool__taint", flat=True)
        .distinct()
    )
    return min(taints, default="")
