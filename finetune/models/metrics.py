"""What running jobs report: training metrics and resource samples (F7.1).

The trainer sends batches with a sequence number per worker; ReportBatch keeps
the (job, worker, seq) seen, so a batch re-sent after a lost acknowledgement is
stored once.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from finetune.models.jobs import Job


class ReportBatch(models.Model):
    job = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="report_batches", verbose_name=_("job")
    )
    worker = models.CharField(_("worker"), max_length=128)
    seq = models.PositiveIntegerField(_("sequence"))
    received_at = models.DateTimeField(_("received"), auto_now_add=True)

    class Meta:
        verbose_name = _("report batch")
        verbose_name_plural = _("report batches")
        constraints = [
            models.UniqueConstraint(fields=["job", "worker", "seq"], name="reportbatch_once"),
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} {self.worker} #{self.seq}"


class MetricPoint(models.Model):
    job = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="metric_points", verbose_name=_("job")
    )
    worker = models.CharField(_("worker"), max_length=128)
    time = models.DateTimeField(_("time"))
    step = models.PositiveIntegerField(_("step"), null=True, blank=True)
    epoch = models.FloatField(_("epoch"), null=True, blank=True)
    loss = models.FloatField(_("loss"), null=True, blank=True)
    eval_loss = models.FloatField(_("validation loss"), null=True, blank=True)
    test_loss = models.FloatField(_("test loss"), null=True, blank=True)
    learning_rate = models.FloatField(_("learning rate"), null=True, blank=True)
    tokens_per_second = models.FloatField(_("tokens/s"), null=True, blank=True)
    progress = models.FloatField(_("progress"), null=True, blank=True)
    eta_seconds = models.FloatField(_("ETA (s)"), null=True, blank=True)

    class Meta:
        verbose_name = _("metric point")
        verbose_name_plural = _("metric points")
        indexes = [models.Index(fields=["job", "time"], name="metricpoint_job_time")]

    def __str__(self) -> str:
        return f"job {self.job_id} step {self.step}"


class ResourceSample(models.Model):
    job = models.ForeignKey(
        Job, on_delete=models.CASCADE, related_name="resource_samples", verbose_name=_("job")
    )
    worker = models.CharField(_("worker"), max_length=128)
    time = models.DateTimeField(_("time"))
    cpu_percent = models.FloatField(_("CPU %"), null=True, blank=True)
    memory_bytes = models.BigIntegerField(_("memory"), null=True, blank=True)
    device_util = models.FloatField(_("device utilisation %"), null=True, blank=True)
    device_memory_bytes = models.BigIntegerField(_("device memory"), null=True, blank=True)
    net_rx_bytes = models.BigIntegerField(_("network received"), null=True, blank=True)
    net_tx_bytes = models.BigIntegerField(_("network sent"), null=True, blank=True)

    class Meta:
        verbose_name = _("resource sample")
        verbose_name_plural = _("resource samples")
        indexes = [models.Index(fields=["job", "time"], name="resourcesample_job_time")]

    def __str__(self) -> str:
        return f"job {self.job_id} {self.worker} {self.time:%Y-%m-%d %H:%M:%S}"
