"""Per-node resource timelines and the fit intervals indexed per demand.

Time is an int: microseconds after the plan's ``now`` (exact, unlike floats, and cheap to
compare). A node's timeline is a step function of its free cpu, memory and devices: segment
``i`` covers ``[times[i], times[i + 1])`` and the last one runs for ever, fully free once
every reservation has ended.

For each *demand* (the cpu/memory/devices of one distinct spec) a node keeps its *fit
intervals*: the maximal intervals in which that demand fits. The last one, open-ended, is
the node's *tail* for that demand. Reservations only ever take resources away, so an
interval can only shrink or split, and a reservation ``[a, b)`` changes intervals only
inside ``[a, b)`` -- which is what keeps updates local and cheap. For the same reason a
finite interval shorter than every queued job that uses its demand (the demand's
``shortest``) can never hold one, nor can any piece of it later: such intervals are not
kept at all.

Each demand indexes the fit intervals of the nodes that hold it, one index per partition
(a dedicated pool's nodes, or all the shared ones; see DemandIndex) whatever else the
nodes' labels and capacities are: tails in one list sorted by start, finite holes by
length class, each class sorted by start. A search passes the nodes its job may use as a
mask over node indexes, so a gang search walks only the ``k`` earliest eligible tails and
the eligible holes that start before them and may be long enough -- one list per length
class, however many kinds of node the cluster has.

Nodes with the same pool, driver, device type and capacity form a *group*: constraints are
decided once per group instead of once per node, and what a reservation size cuts is
worked out once per group.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort

INF = 1 << 62  # "never ends": later than any reservation

Demand = tuple[int, int, int]  # cpu millis, memory bytes, devices

# A tail in an index is one int, ``start << NODE_BITS | node index``: it sorts as (start,
# node) does, and the binary searches that keep tails sorted (a tenth of a plan's
# instructions when they compared tuples) compare ints far faster.
NODE_BITS = 24  # up to 16 million nodes
NODE_MASK = (1 << NODE_BITS) - 1


# Which nodes a search may use, by node index (truthy: yes); None where every node in the
# index may be used, which saves the lookups.
Eligible = bytes | None


class HoleIndex:
    """A demand's finite fit intervals, by length class, each class sorted by start.

    The class of a hole is the bit length of its length, so a search for duration ``d``
    skips every class below ``d``'s wholesale -- long jobs step over the many short holes
    they cannot use -- and the few too-short holes of ``d``'s own class are dropped when the
    sweep reaches them. Holes shorter than ``shortest`` are never kept (see the module's
    docstring), so the first class is that of ``shortest``.
    """

    __slots__ = ("base", "by_class", "size")

    def __init__(self, shortest: int) -> None:
        self.size = 0  # holes kept
        self.base = shortest.bit_length()  # the class of the shortest hole kept
        # by_class[c - base]: the holes of class c, sorted by start
        self.by_class: list[list[tuple[int, int, int]]] = []

    def add(self, p: int, q: int, n: int) -> None:
        at = (q - p).bit_length() - self.base
        by_class = self.by_class
        while len(by_class) <= at:
            by_class.append([])
        insort(by_class[at], (p, q, n))
        self.size += 1

    def remove(self, p: int, q: int, n: int) -> None:
        lst = self.by_class[(q - p).bit_length() - self.base]
        del lst[bisect_left(lst, (p, q, n))]
        self.size -= 1

    def collect(
        self, d: int, bound: int, eligible: Eligible, out: list[tuple[int, int, int]]
    ) -> None:
        """Add to ``out`` the eligible holes that start by ``bound`` and may be ``d`` long."""
        at = d.bit_length() - self.base
        top = (bound, INF, INF)
        for lst in self.by_class[at:] if at > 0 else self.by_class:
            if lst and lst[0][0] <= bound:
                early = lst[: bisect_right(lst, top)]
                out.extend(early if eligible is None else [h for h in early if eligible[h[2]]])

    def first_fit(
        self, d: int, best: tuple[int, int, int], eligible: Eligible
    ) -> tuple[int, int, int]:
        """The least (start, end, node) of an eligible hole ``d`` long or more, if less than
        ``best``.

        What a gang of one takes (gang.py): the earliest start, then the interval that ends
        soonest, then the lowest node. Every hole of a class above ``d``'s is long enough,
        so each such class offers its first eligible one; ``d``'s own class is scanned in
        order for one that is also long enough.
        """
        at = d.bit_length() - self.base
        by_class = self.by_class
        for c in range(len(by_class) - 1, max(at, 0) - 1, -1):
            lst = by_class[c]
            if not lst or lst[0] >= best:
                continue  # nothing better in this class
            if c != at and eligible is None:
                best = lst[0]
                continue
            need = d if c == at else 0
            for hole in lst:
                if hole >= best:
                    break
                if hole[1] - hole[0] >= need and (eligible is None or eligible[hole[2]]):
                    best = hole
                    break
        return best


def earliest_tails(tails: list[int], k: int, eligible: Eligible) -> list[tuple[int, int]]:
    """The eligible tails a gang of ``k`` may take, as sorted (start, node): every one that
    starts before the ``k``-th earliest one's start, and the ``k`` lowest nodes of those
    that start with it -- of those a gang takes the lowest first (gang.py), so no other
    can be chosen.

    ``tails`` (a DemandIndex's) holds at least ``k`` eligible ones.
    """
    if eligible is None:
        first = tails[k - 1] >> NODE_BITS << NODE_BITS  # the k-th one's start, node 0
        chosen = tails[: bisect_left(tails, first) + k]
    else:
        chosen = []
        rest = iter(tails)
        for tail in rest:
            if eligible[tail & NODE_MASK]:
                chosen.append(tail)
                if len(chosen) == k:
                    break
        first = chosen[-1] >> NODE_BITS << NODE_BITS
        last = first | NODE_MASK
        at_bound = len(chosen) - bisect_left(chosen, first)
        for tail in rest:
            if at_bound == k or tail > last:
                break
            if eligible[tail & NODE_MASK]:
                chosen.append(tail)
                at_bound += 1
    return [(tail >> NODE_BITS, tail & NODE_MASK) for tail in chosen]


class DemandIndex:
    """One demand's fit intervals on the nodes of one *partition*: the nodes of a dedicated
    pool, or all the others. A job that names no nodes may only ever use nodes of one
    partition (the pool rule, engine.pool_admits), so its searches never merge indexes,
    and nodes it may never use -- idle in a pool of another team, their tails first in
    line -- are not in its way."""

    __slots__ = ("holes", "node_count", "shortest", "tails")

    def __init__(self, shortest: int) -> None:
        self.shortest = shortest  # the shortest queued job that uses the demand
        self.node_count = 0  # how many nodes it indexes
        # the nodes' tails, sorted (see NODE_BITS)
        self.tails: list[int] = []
        self.holes = HoleIndex(shortest)


class NodeGroup:
    __slots__ = (
        "cpu",
        "cut_by",
        "device_model",
        "device_type",
        "devices",
        "driver_version",
        "indexes",
        "memory",
        "nodes",
        "pool",
    )

    def __init__(
        self,
        pool: str | None,
        driver_version: str | None,
        device_type: str,
        cpu: int,
        memory: int,
        devices: int,
        device_model: str | None = None,
    ) -> None:
        self.pool = pool
        self.device_model = device_model
        self.driver_version = driver_version
        self.device_type = device_type
        self.cpu = cpu
        self.memory = memory
        self.devices = devices
        # the indexes of its nodes: not the nodes themselves, which point back to it, so
        # that the engine's objects form no reference cycle and are freed as soon as it is
        # (no_cyclic_gc)
        self.nodes: list[int] = []
        # demand id -> the index of its partition, for each demand its nodes can hold, in
        # ascending id order
        self.indexes: dict[int, DemandIndex] = {}
        # (cpu, memory, devices) of a reservation -> the demands that no longer fit beside it,
        # as positions in each member node's ``watch``
        self.cut_by: dict[Demand, list[int]] = {}

    def holds(self, demand: Demand) -> bool:
        return demand[0] <= self.cpu and demand[1] <= self.memory and demand[2] <= self.devices

    def bare(self) -> NodeGroup:
        """The group's labels and capacity alone, without its nodes and indexes."""
        return NodeGroup(
            self.pool,
            self.driver_version,
            self.device_type,
            self.cpu,
            self.memory,
            self.devices,
            self.device_model,
        )


class NodeTimeline:
    __slots__ = ("fits", "free", "group", "index", "name", "times", "watch")

    def __init__(self, index: int, name: str, group: NodeGroup) -> None:
        self.index = index
        self.name = name
        self.group = group
        # segment i: from times[i] to times[i + 1], free[i] = (cpu, memory, devices) left
        self.times = [0]
        self.free = [(group.cpu, group.memory, group.devices)]
        # demand id -> its fit intervals [(start, end)], sorted and disjoint
        self.fits: dict[int, list[tuple[int, int]]] = {}
        # per demand, in demand id order: (cpu, memory, devices, the demand's shortest
        # interval kept, its fits list, the demand's tails list and hole index) -- what a
        # reservation touches, looked up once
        self.watch: list[tuple[int, int, int, int, list, list, HoleIndex]] = []

    def frozen_copy(self, group: NodeGroup | None = None) -> NodeTimeline:
        """A copy of the free-capacity steps alone (no intervals), to search later; in
        ``group`` (a bare copy of its own) where given."""
        copy = NodeTimeline(self.index, self.name, group or self.group)
        copy.times, copy.free = self.times[:], self.free[:]
        return copy

    def take(
        self, a: int, b: int, cpu: int, mem: int, dev: int
    ) -> tuple[Demand, Demand, list[tuple[int, Demand]]]:
        """Subtract resources over ``[a, b)``; return the least and the most left of each,
        and the segments there as (start, what is left), the first starting at ``a``.

        The least and the most (cpu, memory, devices) let the caller tell, per demand,
        "still fits all along" or "fits nowhere" without a scan; the segments spare the
        other demands a search of the timeline each.
        """
        # cut the segments around a and b so that some start at each (i: a's, j: b's)
        times, free = self.times, self.free
        i = bisect_right(times, a) - 1
        if times[i] != a:
            i += 1
            times.insert(i, a)
            free.insert(i, free[i - 1])
        j = bisect_right(times, b, i) - 1
        if times[j] != b:
            j += 1
            times.insert(j, b)
            free.insert(j, free[j - 1])
        if j == i + 1:  # one segment: the usual case, worth its own path
            c, m, d = free[i]
            c, m, d = free[i] = (c - cpu, m - mem, d - dev)
            low = high = (c, m, d)
            span = [(a, low)]
        else:
            for s in range(i, j):
                c, m, d = free[s]
                free[s] = (c - cpu, m - mem, d - dev)
            cs, ms, ds = zip(*free[i:j], strict=True)
            low, high = (min(cs), min(ms), min(ds)), (max(cs), max(ms), max(ds))
            span = list(zip(times[i:j], free[i:j], strict=True))
        # drop boundaries where nothing changes any more: keeps later scans short
        if j < len(times) and free[j] == free[j - 1]:
            del times[j], free[j]
        if i > 0 and free[i] == free[i - 1]:
            del times[i], free[i]
        return low, high, span

    def fit_runs(self, demand: Demand, a: int, b: int) -> list[tuple[int, int]]:
        """The maximal intervals within ``[a, b)`` in which ``demand`` fits."""
        dc, dm, dd = demand
        times, free = self.times, self.free
        last = len(times) - 1
        s = bisect_right(times, a) - 1
        runs: list[tuple[int, int]] = []
        start = -1
        while s <= last and times[s] < b:
            c, m, d = free[s]
            if c >= dc and m >= dm and d >= dd:
                if start < 0:
                    start = max(times[s], a)
            elif start >= 0:
                runs.append((start, times[s]))
                start = -1
            s += 1
        if start >= 0:
            runs.append((start, b))
        return runs


class FitIndex:
    """Keeps every node's fit intervals, and their per-demand index, true as reservations
    land."""

    __slots__ = ("demands", "nodes")

    def __init__(self, nodes: list[NodeTimeline], demands: list[Demand]):
        self.nodes = nodes
        self.demands = demands

    def build(self) -> None:
        """Compute every node's intervals from its timeline (once, after running jobs)."""
        for node in self.nodes:
            n = node.index
            for d_id, index in node.group.indexes.items():
                demand, shortest = self.demands[d_id], index.shortest
                runs = [(p, q) for p, q in node.fit_runs(demand, 0, INF) if q - p >= shortest]
                node.fits[d_id] = runs
                tails, holes = index.tails, index.holes
                index.node_count += 1
                node.watch.append((*demand, shortest, runs, tails, holes))
                for p, q in runs:
                    if q == INF:
                        insort(tails, p << NODE_BITS | n)
                    else:
                        holes.add(p, q, n)

    def reserve_gang(self, nodes: list[NodeTimeline], a: int, b: int, need: Demand) -> None:
        """Take ``need`` over ``[a, b)`` on each of ``nodes``."""
        for node in nodes:
            if a >= node.times[-1]:
                self._append(node, a, b, need)
            else:
                self.reserve(node, a, b, need)

    def _append(self, node: NodeTimeline, a: int, b: int, need: Demand) -> None:
        """``reserve`` for the common case of a node that is idle from ``a`` on.

        More than half of all reservations land there once the queue runs past the
        running jobs. Every demand's last interval is then its tail, so the splice reduces
        to cutting ``[a, b)`` out of the tail of each demand that does not fit beside the
        job -- which ones the node's group works out once per reservation size.
        """
        group = node.group
        cpu, mem, dev = group.cpu - need[0], group.memory - need[1], group.devices - need[2]
        cut = group.cut_by.get(need)
        if cut is None:
            cut = group.cut_by[need] = [
                i
                for i, (dc, dm, dd, *_) in enumerate(node.watch)
                if not (cpu >= dc and mem >= dm and dev >= dd)
            ]
        times, free = node.times, node.free
        left = (cpu, mem, dev)
        if a > times[-1]:
            times.append(a)
            free.append(left)
        elif len(times) > 1 and free[-2] == left:
            times.pop()  # same as the segment before: extend that one instead
            free.pop()
        else:
            free[-1] = left
        times.append(b)
        free.append((group.cpu, group.memory, group.devices))
        n = node.index
        watch = node.watch
        # the same new tail for every demand cut (intervals are immutable, so shared)
        tail, tail_key = (b, INF), b << NODE_BITS | n
        for i in cut:
            _, _, _, shortest, fits, tails, holes = watch[i]
            p = fits[-1][0]
            del tails[bisect_left(tails, p << NODE_BITS | n)]
            insort(tails, tail_key)
            if a - p >= shortest:
                fits[-1] = (p, a)
                fits.append(tail)
                holes.add(p, a, n)
            else:
                fits[-1] = tail

    def reserve(self, node: NodeTimeline, a: int, b: int, need: Demand) -> None:
        """Take ``need`` on ``node`` over ``[a, b)`` and splice the intervals it changes."""
        (low_c, low_m, low_d), (high_c, high_m, high_d), span = node.take(a, b, *need)
        n = node.index
        # the intervals overlapping [a, b): the last one starting at or before a, if it
        # reaches past a, up to the first one starting at or after b
        past_a, from_b = (a, INF), (b,)
        for dc, dm, dd, shortest, fits, tails, holes in node.watch:
            if low_c >= dc and low_m >= dm and low_d >= dd:
                continue  # still fits wherever it did: nothing to change
            lo = bisect_right(fits, past_a) - 1
            if lo < 0 or fits[lo][1] <= a:
                lo += 1
            hi = bisect_left(fits, from_b, lo)
            if lo == hi:
                # the demand fitted nowhere in [a, b) before, or only in intervals too short to
                # keep: still so
                continue
            # outside [a, b) nothing changed: the overhanging ends of the old intervals stay
            p0, q1 = fits[lo][0], fits[hi - 1][1]
            if high_c < dc or high_m < dm or high_d < dd:
                # fits nowhere in [a, b) now: the ends are all that is left
                pieces = []
                if a - p0 >= shortest:
                    pieces.append((p0, a))
                if q1 - b >= shortest:
                    pieces.append((b, q1))
            else:
                # the runs where it fits now, the first carrying on the interval that
                # reached [a, b) from before, the last the one that reaches on past it
                pieces = []
                start = p0 if p0 < a else -1
                for t, (c, m, d) in span:
                    if c >= dc and m >= dm and d >= dd:
                        if start < 0:
                            start = t
                    elif start >= 0:
                        if t - start >= shortest:
                            pieces.append((start, t))
                        start = -1
                if start >= 0:
                    if max(q1, b) - start >= shortest:
                        pieces.append((start, max(q1, b)))
                elif q1 - b >= shortest:
                    pieces.append((b, q1))
            old = fits[lo:hi]
            fits[lo:hi] = pieces
            for p, q in old:
                if q == INF:
                    del tails[bisect_left(tails, p << NODE_BITS | n)]
                else:
                    holes.remove(p, q, n)
            for p, q in pieces:
                if q == INF:
                    insort(tails, p << NODE_BITS | n)
                else:
                    holes.add(p, q, n)
