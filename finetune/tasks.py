import logging

from celery import shared_task

from finetune import retention

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
