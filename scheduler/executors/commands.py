"""The command line each node of a job runs, the same for every backend.

A job of one process runs the trainer itself. Any other runs PyTorch's own launcher
(torchrun, `python -m torch.distributed.run`) on each node: it starts one trainer
process per device of the node's spec (a CPU-only spec: its process count), gives
each its RANK, LOCAL_RANK and WORLD_SIZE, meets the other nodes at node 0
(static rendezvous at MASTER_ADDR:MASTER_PORT), and ends every process of the node
when one fails. The trainer command follows `--no-python` as it is, so whatever
runs it (tests run small scripts) runs under the launcher unchanged.
"""

from __future__ import annotations

import re
import shlex

from scheduler.executors.base import Placement

LAUNCHER = ["-m", "torch.distributed.run"]


def node_command(
    placement: Placement,
    trainer: list[str],
    *,
    python: str,
    node_rank: str,
    master_addr: str,
    master_port: str,
) -> list[str]:
    """What node `node_rank` runs: the trainer, or torchrun in front of it."""
    if placement.world_size == 1:
        return list(trainer)
    return [
        python,
        *LAUNCHER,
        f"--nnodes={placement.node_count}",
        f"--node-rank={node_rank}",
        f"--nproc-per-node={placement.processes_per_node}",
        f"--master-addr={master_addr}",
        f"--master-port={master_port}",
        # A failed rank fails the job: the platform decides about retries (requeue).
        "--max-restarts=0",
        "--no-python",
        *trainer,
    ]


def threads_per_process(placement: Placement) -> int:
    """OMP_NUM_THREADS: the spec's CPUs shared out between its processes on a node
    (torchrun would set 1 for every process whatever the node has)."""
    return max(1, placement.cpu_millis // 1000 // max(1, placement.processes_per_node))


# An option whose value a node's environment gives ("--node-rank=$NODE_RANK").
_FROM_ENVIRONMENT = re.compile(r"--[a-z-]+=\$[A-Z_]+")


def shown(argv: list[str]) -> str:
    """The command as a shell line, the environment's variables left for the shell."""
    return " ".join(
        word if _FROM_ENVIRONMENT.fullmatch(word) else shlex.quote(word) for word in argv
    )
