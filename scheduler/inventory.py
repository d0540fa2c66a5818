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
    """A constant number of queries whatever the number of nodes: one read, one insert
    of the new, one bulk update of the known, one update of the vanished."""
    now = now or timezone.now()
    pools = {pool.name: pool for pool in ResourcePool.objects.all()}
    existing = {node.name: node for node in Node.objects.select_for_update()}
    result = SyncResult([], [], [])
    added, updated = [], []
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
            "device_model": info.device_model,
            "cpu_millis": info.cpu_millis,
            "memory_mib": info.memory_mib,
            "device_type": info.device_type,
            "device_count": info.device_count,
            "schedulable": info.schedulable,
            "last_seen": now,
        }
        node = existing.pop(info.name, None)
        if node is None:
            added.append(Node(name=info.name, **values))
            result.added.append(info.name)
        else:
            for field, value in values.items():
                setattr(node, field, value)
            updated.append(node)
            result.updated.append(info.name)
    Node.objects.bulk_create(added, batch_size=500)
    if updated:
        Node.objects.bulk_update(updated, list(values), batch_size=500)
    vanished = [node for node in existing.values() if node.schedulable]
    Node.objects.filter(pk__in=[node.pk for node in vanished]).update(schedulable=False)
    result.vanished.extend(node.name for node in vanished)
    return result
