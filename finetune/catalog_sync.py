"""Copy the trainer's scenarios and algorithms into the catalog tables.

The trainer package is the single source of algorithms (DESIGN.md "Domain");
this runs at deploy time (`manage.py sync_algorithms`) and from `seed_demo`.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from finetune.models import Algorithm, Scenario
from trainer import catalog


@dataclass
class SyncResult:
    created: list[str]
    updated: list[str]
    disabled: list[str]


@transaction.atomic
def sync_catalog() -> SyncResult:
    now = timezone.now()
    scenarios: dict[str, Scenario] = {}
    for order, info in enumerate(catalog.SCENARIOS):
        scenarios[info.code], _created = Scenario.objects.update_or_create(
            code=info.code,
            defaults={
                "task_type": info.task_type,
                "name": info.name,
                "name_zh": info.name_zh,
                "sort_order": (order + 1) * 10,
            },
        )
    result = SyncResult(created=[], updated=[], disabled=[])
    for info in catalog.ALGORITHMS:
        _algorithm, created = Algorithm.objects.update_or_create(
            code=info.code,
            defaults={
                "scenario": scenarios[info.scenario],
                "name": info.name,
                "name_zh": info.name_zh,
                "description": info.description,
                "description_zh": info.description_zh,
                "parameters_schema": info.parameters_schema,
                "enabled": True,
                "synced_at": now,
            },
        )
        (result.created if created else result.updated).append(info.code)
    known = {info.code for info in catalog.ALGORITHMS}
    gone = Algorithm.objects.exclude(code__in=known).filter(enabled=True)
    result.disabled = list(gone.values_list("code", flat=True))
    # Jobs keep pointing at a retired algorithm, so it is disabled, not deleted.
    gone.update(enabled=False, synced_at=now)
    return result
