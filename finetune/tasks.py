import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from finetune import retention
from finetune.services import checkpoints, evaluations, exports, jobs, playground, validation

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=600, time_limit=900)
def downsample_metrics() -> None:
    """Thin reported metrics past their full-resolution period (finetune/retention.py)."""
    thinned = retention.downsample()
    if thinned.metric_points or thinned.resource_samples:
        logger.info(
            "thinned %d metric points and %d resource samples",
            thinned.metric_points,
            thinned.resource_samples,
        )


@shared_task(
    ignore_result=True,
    acks_late=True,
    soft_time_limit=settings.JINGTIAO_VALIDATION_TIME_LIMIT_SECONDS,
    time_limit=settings.JINGTIAO_VALIDATION_TIME_LIMIT_SECONDS + 60,
)
def validate_dataset(dataset_id: int, request: int) -> None:
    """Validate a data set (routed to the `data` queue: CELERY_TASK_ROUTES), then let
    the jobs waiting for it go on (finetune/services/validation.py)."""
    try:
        done = validation.run_validation(dataset_id, request)
    except SoftTimeLimitExceeded:
        logger.error("data set %s: validation ran past its time limit", dataset_id)
        done = validation.give_up(dataset_id, request)
    if done:
        jobs.release_jobs_of(dataset_id)


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=60, time_limit=90)
def sweep_validations() -> None:
    """Validations nobody carries out are asked for again; jobs whose data was judged
    while they were being created go on (finetune/services/validation.py)."""
    validation.sweep()
    jobs.release_waiting_jobs()


@shared_task(
    ignore_result=True,
    acks_late=True,
    soft_time_limit=settings.JINGTIAO_EXPORT_TIME_LIMIT_SECONDS + 60,
    time_limit=settings.JINGTIAO_EXPORT_TIME_LIMIT_SECONDS + 120,
)
def export_version(export_id: int) -> None:
    """Merge a LoRA version into its base (routed to the `inference` queue:
    CELERY_TASK_ROUTES; finetune/services/exports.py)."""
    exports.run_export(export_id)


@shared_task(
    ignore_result=True,
    acks_late=True,
    soft_time_limit=settings.JINGTIAO_EXPORT_TIME_LIMIT_SECONDS + 60,
    time_limit=settings.JINGTIAO_EXPORT_TIME_LIMIT_SECONDS + 120,
)
def evaluate_version(evaluation_id: int) -> None:
    """Evaluate a version on a data set (the `export` queue; services/evaluations.py)."""
    evaluations.run_evaluation(evaluation_id)


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=60, time_limit=90)
def sweep_exports() -> None:
    """Merges and evaluations nobody carries out are asked for again (services/modelwork.py)."""
    exports.sweep()
    evaluations.sweep()


@shared_task(
    ignore_result=True,
    # the answer's own limit, plus what loading a large model may take
    soft_time_limit=settings.JINGTIAO_PLAYGROUND_TIME_LIMIT_SECONDS + 600,
    time_limit=settings.JINGTIAO_PLAYGROUND_TIME_LIMIT_SECONDS + 660,
)
def answer_playground(run_id: int) -> None:
    """Answer a question of the playground (routed to the `inference` queue; not acked
    late: a question whose worker died is failed with the reason, not answered twice)."""
    try:
        playground.answer(run_id)
    except SoftTimeLimitExceeded:
        playground.timed_out(run_id)


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=60, time_limit=90)
def sweep_playground() -> None:
    """Questions nobody answers are failed with the reason, and old ones forgotten
    (finetune/services/playground.py)."""
    playground.give_up_overdue()
    playground.forget_old()


@shared_task(ignore_result=True, acks_late=True, soft_time_limit=600, time_limit=900)
def remove_old_checkpoints() -> None:
    """Checkpoints kept past JINGTIAO_CHECKPOINT_RETENTION_DAYS go (services/checkpoints.py)."""
    removed = checkpoints.sweep()
    if removed:
        logger.info("removed the checkpoints of %d jobs", removed)
