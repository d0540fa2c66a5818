"""The executor backend of this deployment, chosen by settings.JINGTIAO_EXECUTOR."""

from __future__ import annotations

from functools import cache

from django.conf import settings

from scheduler.executors.base import Executor


@cache
def get_executor() -> Executor:
    """One instance per process: the kubernetes one keeps its connection pool.

    Tests that change JINGTIAO_EXECUTOR call `get_executor.cache_clear()`.
    """
    if settings.JINGTIAO_EXECUTOR == "kubernetes":
        from scheduler.executors.kubernetes import KubernetesExecutor

        return KubernetesExecutor()
    from scheduler.executors.local import LocalExecutor

    return LocalExecutor()
