"""The planner decides today exactly as it did before it was made faster (issue 14).

Each state below is generated from a seed by the planner benchmark's builders -- small
heterogeneous clusters with gangs of up to 32 nodes, node names, pools, drivers and device
models, and the two full benchmark shapes -- and the digest of every decision (start,
spec, nodes, position, and why a job can never run) was recorded with the algorithm as it
was before the indexing changes. A mismatch names the state: plan it at the commit before
those changes and compare the decisions one by one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
from pathlib import Path

import pytest

from scheduler.planner import Plan, plan

_BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "planner.py"
_spec = importlib.util.spec_from_file_location("planner_benchmark", _BENCH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def digest(result: Plan) -> str:
    lines = [
        f"{d.job_id} {d.start.isoformat() if d.start else '-'} {d.spec_id} "
        f"{','.join(d.nodes)} {d.position} {d.reason_code}"
        for d in result.values()
    ]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def small_state(seed: int):
    rng = random.Random(seed)
    nodes = rng.choice([12, 40, 90])
    return bench.build_heterogeneous(
        rng, nodes_count=nodes, running_count=nodes * 2, jobs=rng.choice([50, 300])
    )


# seed -> digest of its plan, recorded before the planner was reindexed
SMALL = {
    0: "e18e1fb550afec32",
    1: "db126e67505fa799",
    2: "b7bb5e3a1d2872ad",
    3: "cb314880b488e0c9",
    4: "4515dd7caa11ac91",
    5: "359d295257261814",
    6: "8fa51fd532215515",
    7: "cfd6b4019fffe97e",
    8: "c76a32078769a212",
    9: "373258a628d75a19",
    10: "145601a7d4c8067d",
    11: "77129c05bb4a74cc",
    12: "a73ead05af37fdbc",
    13: "f6c61683ca10e18e",
    14: "a2f574b7ee75a867",
    15: "a9a27b48ac3c14bb",
    16: "b334f8e8be7f8c68",
    17: "b6b4e47b5391ce0a",
    18: "56f709a95b86a0d3",
    19: "4012503d6cfc8c57",
    20: "1698b2b88f40da18",
    21: "78349bde5f7e09b5",
    22: "bf024f2379b4f142",
    23: "b75c2a3316a3c2bd",
    24: "21d4f80bf156063b",
    25: "81ad5e0e9bc22ccf",
    26: "2e5ed8474b0b89cb",
    27: "5e388f03c511d2f1",
    28: "565a7f93d337805d",
    29: "25562fd7a846e776",
    30: "8b5373a891678ebb",
    31: "02f1e9af36e40090",
    32: "df51542647de55bd",
    33: "73dda07343278c10",
    34: "7eba841cd28446b1",
    35: "b142cf45a6cf0429",
    36: "d99f1df0722a3d4c",
    37: "0e5b3299aeab954c",
    38: "507db1462f49cdb5",
    39: "63766cf51b33d739",
    40: "063604b96b31f5cb",
    41: "65f8a3bebe429036",
    42: "ee8f0ed95d389b08",
    43: "2dd75b86eade4457",
    44: "80c9d629e51c12d0",
    45: "e3591a325cccfca1",
    46: "335abbe18c9aa02c",
    47: "724c02b02a71f6ca",
    48: "a1665c319ed96b39",
    49: "8b94e262e1f2fbcc",
    50: "53607c4eae647495",
    51: "1e255f5cb6902f16",
    52: "a9e871d4ea8b70a9",
    53: "36daf043344d384a",
    54: "01d84451bab33406",
    55: "5591c42bf9fd413a",
    56: "eceea9fedc000057",
    57: "b901b24b6137d140",
    58: "be3bfc8c090698ce",
    59: "217b8948e953d093",
}

FULL = {"uniform": "c8bbc8ef3f6966cb", "heterogeneous": "a40b62bf180b2828"}


@pytest.mark.parametrize("seed", sorted(SMALL))
def test_small_heterogeneous_states_plan_as_before(seed: int) -> None:
    nodes, pools, running, queue = small_state(seed)
    assert digest(plan(nodes, pools, running, queue, bench.NOW)) == SMALL[seed]


def test_the_benchmark_shapes_plan_as_before() -> None:
    rng = random.Random(7)
    nodes, pools = bench.build_cluster(rng)
    running = bench.build_running(rng, nodes, 2000)
    queue = bench.build_queue(rng, nodes, 10_000)
    found = {"uniform": digest(plan(nodes, pools, running, queue, bench.NOW))}
    nodes, pools, running, queue = bench.build_heterogeneous(random.Random(11))
    found["heterogeneous"] = digest(plan(nodes, pools, running, queue, bench.NOW))
    assert found == FULL
