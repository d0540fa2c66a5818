"""Compute resources: node specs users choose, pools, and the nodes behind them."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from accounts.models import Project

MIB = 1024 * 1024
# An extended resource: a DNS subdomain, a slash, a name (cambricon.com/mlu370).
RESOURCE_NAME = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)


class DeviceType(models.TextChoices):
    MLU = "mlu", _("Cambricon MLU")
    GPU = "gpu", _("NVIDIA GPU")
    NONE = "none", _("CPU only")


class NodeSpec(models.Model):
    """The resources of one compute node of a job (单节点规格, F1.12)."""

    name = models.CharField(_("name"), max_length=64, unique=True)
    cpu_millis = models.PositiveIntegerField(_("CPU (millicores)"))
    memory_mib = models.PositiveIntegerField(_("memory (MiB)"))
    device_type = models.CharField(
        _("device type"), max_length=8, choices=DeviceType.choices, default=DeviceType.MLU
    )
    device_count = models.PositiveSmallIntegerField(_("devices"), default=0)
    device_model = models.CharField(
        _("device model"),
        max_length=64,
        blank=True,
        help_text=_(
            "e.g. MLU370-X8 or H100-80G; when set, only nodes whose Model label is this "
            "model run the spec."
        ),
    )
    device_memory_gib = models.PositiveIntegerField(
        _("memory per device (GiB)"),
        default=0,
        help_text=_("What one device holds; the memory estimate checks jobs against it."),
    )
    device_resource = models.CharField(
        _("device resource name"),
        max_length=253,
        blank=True,
        help_text=_(
            "The Kubernetes resource the device plugin exposes, e.g. cambricon.com/mlu370; "
            "empty: the default of the device type."
        ),
    )
    cpu_processes = models.PositiveSmallIntegerField(
        _("processes per node (CPU only)"),
        default=1,
        help_text=_(
            "How many training processes a CPU-only node runs; a device spec runs one per device."
        ),
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    sort_order = models.PositiveSmallIntegerField(_("order"), default=0)

    class Meta:
        ordering = ["sort_order", "name"]
        verbose_name = _("node spec")
        verbose_name_plural = _("node specs")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(cpu_millis__gt=0), name="nodespec_cpu_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(memory_mib__gt=0), name="nodespec_memory_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(device_type__in=DeviceType.values), name="nodespec_device_valid"
            ),
            # A CPU-only spec has no devices; an accelerator spec has at least one.
            models.CheckConstraint(
                condition=(models.Q(device_type="none") & models.Q(device_count=0))
                | (~models.Q(device_type="none") & models.Q(device_count__gte=1)),
                name="nodespec_device_count_matches_type",
            ),
            models.CheckConstraint(
                condition=models.Q(cpu_processes__gte=1), name="nodespec_processes_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.summary})"

    def clean(self) -> None:
        errors = {}
        if self.device_type != DeviceType.NONE and self.cpu_processes != 1:
            errors["cpu_processes"] = _(
                "A spec with devices runs one process per device; leave this at 1."
            )
        if self.device_type == DeviceType.NONE and (self.device_model or self.device_memory_gib):
            errors["device_model"] = _("A CPU-only spec has no device model or device memory.")
        if self.device_resource and not RESOURCE_NAME.fullmatch(self.device_resource):
            errors["device_resource"] = _(
                "Not a Kubernetes extended resource name such as cambricon.com/mlu370."
            )
        if errors:
            raise ValidationError(errors)

    @property
    def processes_per_node(self) -> int:
        """Training processes (torchrun's --nproc-per-node) on each node of this spec."""
        return self.device_count if self.device_type != DeviceType.NONE else self.cpu_processes

    @property
    def memory_per_process_gib(self) -> float:
        """What one process may use: its device's memory, or its share of the node's RAM."""
        if self.device_type != DeviceType.NONE:
            return float(self.device_memory_gib)
        return self.memory_mib / 1024 / self.processes_per_node

    @property
    def summary(self) -> str:
        cpus = f"{self.cpu_millis / 1000:g} CPU"
        memory = f"{self.memory_mib / 1024:g} GiB"
        parts = [cpus, memory]
        if self.device_type != DeviceType.NONE:
            device = self.device_model or self.device_type.upper()
            each = f" ({self.device_memory_gib} GiB)" if self.device_memory_gib else ""
            parts.append(f"{self.device_count} {device}{each}")
        elif self.cpu_processes > 1:
            parts.append(_("%(count)d processes") % {"count": self.cpu_processes})
        return " · ".join(parts)


class ResourcePool(models.Model):
    """A named set of nodes, dedicated to some projects (专属资源池, F1.14) or shared."""

    name = models.SlugField(_("name"), max_length=63, unique=True)
    dedicated = models.BooleanField(
        _("dedicated"), default=False, help_text=_("Only the listed projects may use it.")
    )
    projects = models.ManyToManyField(
        Project, blank=True, related_name="resource_pools", verbose_name=_("projects")
    )
    taint = models.CharField(
        _("taint"),
        max_length=253,
        blank=True,
        help_text=_("Kubernetes taint the pool's nodes carry, as key=value:Effect."),
    )
    description = models.TextField(_("description"), blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("resource pool")
        verbose_name_plural = _("resource pools")

    def __str__(self) -> str:
        return self.name


class Node(models.Model):
    """A compute node, synced from the executor backend; never deleted, only unschedulable."""

    name = models.CharField(_("name"), max_length=253, unique=True)
    pool = models.ForeignKey(
        ResourcePool,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="nodes",
        verbose_name=_("pool"),
    )
    labels = models.JSONField(_("labels"), default=dict, blank=True)
    driver_version = models.CharField(_("driver version"), max_length=64, blank=True, db_index=True)
    cpu_millis = models.PositiveIntegerField(_("allocatable CPU (millicores)"), default=0)
    memory_mib = models.PositiveIntegerField(_("allocatable memory (MiB)"), default=0)
    device_type = models.CharField(
        _("device type"), max_length=8, choices=DeviceType.choices, default=DeviceType.NONE
    )
    device_count = models.PositiveSmallIntegerField(_("allocatable devices"), default=0)
    device_model = models.CharField(_("device model"), max_length=64, blank=True, db_index=True)
    schedulable = models.BooleanField(_("schedulable"), default=True)
    last_seen = models.DateTimeField(_("last seen"), null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("node")
        verbose_name_plural = _("nodes")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(device_type__in=DeviceType.values), name="node_device_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Heartbeat(models.Model):
    """When a periodic part of the platform last showed it runs. "beat": Celery beat's
    `heartbeat` task, run by a worker, so the whole beat -> broker -> worker path lives;
    /healthz reports it stale (config/health.py)."""

    name = models.CharField(_("name"), max_length=32, primary_key=True)
    at = models.DateTimeField(_("last beat"))

    class Meta:
        verbose_name = _("heartbeat")
        verbose_name_plural = _("heartbeats")

    def __str__(self) -> str:
        return f"{self.name} {self.at:%Y-%m-%d %H:%M:%S}"


class KueueQueue(models.Model):
    """A Kueue ClusterQueue as last read from the cluster, with Kueue admission
    (JINGTIAO_ADMISSION=kueue): the quotas the planner predicts starts over, and the
    LocalQueues of this deployment's namespace that feed it (scheduler/kueue.py)."""

    name = models.CharField(_("ClusterQueue"), max_length=253, unique=True)
    local_queues = models.JSONField(_("LocalQueues"), default=list, blank=True)
    # [{"name": flavor, "node_labels": {...}, "quotas": {resource: quantity}}], in the
    # order Kueue tries them
    flavors = models.JSONField(_("flavors and quotas"), default=list, blank=True)
    synced_at = models.DateTimeField(_("last read"))

    class Meta:
        ordering = ["name"]
        verbose_name = _("Kueue ClusterQueue")
        verbose_name_plural = _("Kueue ClusterQueues")

    def __str__(self) -> str:
        return self.name
