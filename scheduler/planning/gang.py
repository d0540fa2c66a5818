"""The earliest moment at which ``k`` distinct nodes can all hold a demand for a duration.

A node can host a start at ``t`` for duration ``d`` exactly when one of its fit intervals
``[p, q)`` has ``p <= t <= q - d``. A node's fit intervals are disjoint, so no node can count
twice. The earliest feasible ``t`` is always the start ``p`` of some interval (move ``t``
back to the latest start among the chosen intervals and they all still hold it), so a sweep
over interval starts, with a heap of the active intervals keyed by their last usable start,
finds it. The caller bounds the sweep: with the ``k`` earliest tails (open-ended intervals)
the answer is at most the ``k``-th tail start, so only holes that start before it matter.
"""

from __future__ import annotations

from heapq import heappop, heappush

from scheduler.planning.timeline import INF


def earliest_gang(
    tails: list[tuple[int, int]],
    holes: list[tuple[int, int, int]],
    k: int,
    d: int,
    before: int,
) -> tuple[int, list[int]] | None:
    """Earliest start ``< before`` for ``k`` nodes, and which nodes; None if there is none.

    ``tails``: (start, node) of open-ended intervals, sorted, holding at least the ``k``
    earliest of the eligible nodes. ``holes``: (start, end, node) of finite intervals in any
    order, possibly too short for ``d`` (the sweep skips those when it reaches them); the
    list is used up.
    """
    if not holes:
        if len(tails) < k or tails[k - 1][0] >= before:
            return None
        # no hole to weigh: the k-th earliest tail decides; among the tails that are free
        # by then take the ones freed last, so the least capacity stands idle waiting
        t = tails[k - 1][0]
        ready = [e for e in tails if e[0] <= t]
        if len(ready) > k:
            # a node has one tail, so no two keys tie: a plain sort, cheaper than nsmallest
            # for the few dozen tails there are, picks the same ones
            ready = sorted(ready, key=lambda e: (-e[0], e[1]))[:k]
        return t, [n for _, n in ready]
    events = holes
    events.extend([(p, INF, n) for p, n in tails])
    events.sort()
    events.append((INF, INF, -1))  # sentinel: closes the last group of equal starts
    active: list[tuple[int, int, int]] = []  # (last usable start, -start, node)
    t = -1
    pushed = False
    for p, q, n in events:
        if p != t:
            # every interval starting at t is in: can the gang start at t?
            if pushed:
                while active[0][0] < t:
                    heappop(active)
                if len(active) >= k:
                    # best fit: the intervals that end soonest, then the ones that began
                    # last, so long gaps stay open for the jobs behind this one (no two
                    # tie: the active intervals are on distinct nodes)
                    return t, [m for _, _, m in sorted(active)[:k]]
                pushed = False
            if p >= before:
                return None
            t = p
        if q - d >= p:  # long enough
            heappush(active, (q - d, -p, n))
            pushed = True
    return None  # unreachable: the sentinel returns
