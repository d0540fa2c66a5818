"""Node inventory: the nodes the executor backend reports, kept in the Node table.

Nodes that vanish become unschedulable, never deleted: running jobs and their
history still point at them, and they usually come back.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from scheduler.executors.base import NodeInfo
from scheduler.models import Node, ResourcePool


@dataclass(frozen=True)
class SyncResult:
    added: list[str]
    updated: list[str]
    vanished: list[str]


@transaction.atomic
def sync_nodes(reported: list[NodeInfo], now=None) -> SyncResult:
    now = now or timezone.now()
    pools = {pool.name: pool for pool in ResourcePool.objects.all()}
    existing = {node.name: node for node in Node.objects.select_for_update()}
    result = SyncResult([], [], [])
    for info in reported:
        pool = None
        if info.pool:
            # A pool label the platform does not know yet becomes a shared pool
            # that an operator can then dedicate to projects.
            pool = pools.get(info.pool) or ResourcePool.objects.create(name=info.pool)
            pools[info.pool] = pool
        values = {
            "pool": pool,
            "labels": info.labels,
            "driver_version": info.driver_version,
            "cpu_millis": info.cpu_millis,
            "memory_mib": info.memory_mib,
            "device_type": info.device_type,
            "device_count": info.device_count,
            "schedulable": info.schedulable,
            "last_seen": now,
        }
        node = existing.pop(info.name, None)
        if node is None:
            Node.objects.create(name=info.name, **values)
            result.added.append(info.name)
        else:
            Node.objects.filter(pk=node.pk).update(**values)
            result.updated.append(info.name)
    for name, node in existing.items():
        if node.schedulable:
            Node.objects.filter(pk=node.pk).update(schedulable=False)
            result.vanished.append(name)
    return result
