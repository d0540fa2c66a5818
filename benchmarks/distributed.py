"""Distributed training on this machine's CPUs: ranks, scaling, FSDP2, the memory estimate.

Every run is the real trainer (`python -m trainer run`) started the way the executors
start it: the trainer itself for one process, torchrun in front of it for more
(scheduler/executors/commands.py), two "nodes" being two torchrun launchers on this
machine that meet at node 0, as with JINGTIAO_LOCAL_NODES=2.

Figures:
- ranks_seen_1x2, ranks_seen_2x2: distinct global ranks whose log line says they trained
  (1 node x 2 processes, 2 nodes x 2 processes);
- tokens_per_s_1x1, tokens_per_s_1x2, scaling_1x2: the same global batch (16 packed rows
  of 256 tokens a step) on one device and on two, a device being one CPU core (each
  process one thread, as the executors give a CPU spec's processes its CPUs shared
  out), from the Trainer's token count over its train_runtime;
- zero3_reload_max_abs_diff: ZeRO-3 on 2 processes; the saved model reloaded without any
  sharding gives the logits the trained, sharded model gave (max |difference|);
  fsdp2_reload_max_abs_diff the same for FSDP2 where it runs: on accelerators only
  (trainer/sharding.py says why), so on a CPU-only machine the line says so;
- memory_estimate_error_pct: the worst |estimate - measured peak RSS| / measured over the
  memory configurations (trainer/memory.py; the trainer logs both numbers).

Usage: python benchmarks/distributed.py [--only ranks,scaling,reload,memory]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer.samples import write_sample_dataset  # noqa: E402
from trainer.tiny import build_tiny_llm  # noqa: E402

PEAK = re.compile(r"peak memory: ([\d.]+) GiB per device, estimated ([\d.]+) GiB")
TRAINED = re.compile(r"\[rank (\d+)\] jingtiao\.train: first step done on rank \d+ of (\d+)")
# Memory configurations: (name, algorithm, processes, parameters)
MEMORY_RUNS = [
    ("full_ddp_1", "sft_full", 1, {}),
    ("lora_1", "sft_lora", 1, {}),
    ("full_nockpt_1", "sft_full", 1, {"gradient_checkpointing": False, "max_length": 512}),
    ("full_ddp_2", "sft_full", 2, {"sharding": "ddp"}),
    ("full_zero2_2", "sft_full", 2, {"sharding": "zero2"}),
    ("full_zero3_2", "sft_full", 2, {"sharding": "zero3"}),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def spec(root: Path, name: str, model: Path, data: Path, algorithm: str, params: dict) -> Path:
    path = root / f"{name}.json"
    path.write_text(
        json.dumps(
            {
                "job_id": 1,
                "scenario": "llm/sft",
                "algorithm": algorithm,
                "parameters": {"logging_steps": 1, "epochs": 1, **params},
                "base_model": str(model),
                "train_data": str(data),
                "output_dir": str(root / f"out-{name}"),
                "report": None,
            }
        )
    )
    return path


def run(
    spec_path: Path,
    nodes: int,
    per_node: int,
    *,
    trainer: list[str] | None = None,
    threads: int | None = None,
) -> str:
    """One job as the executors launch it; returns every node's log, joined. Each
    process gets `threads` threads, by default this machine's CPUs shared out."""
    command = trainer or [sys.executable, "-m", "trainer", "run", "--spec", str(spec_path)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    shared = max(1, (os.cpu_count() or 1) // (nodes * per_node))
    env["OMP_NUM_THREADS"] = str(threads or shared)
    if nodes * per_node == 1:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        return result.stdout + result.stderr
    port = str(free_port())
    launchers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                f"--nnodes={nodes}",
                f"--node-rank={rank}",
                f"--nproc-per-node={per_node}",
                "--master-addr=127.0.0.1",
                f"--master-port={port}",
                "--max-restarts=0",
                "--no-python",
                *command,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(nodes)
    ]
    return "".join(launcher.communicate(timeout=600)[0] for launcher in launchers)


def outcome(log: str) -> None:
    if "jingtiao: succeeded" not in log:
        tail = "\n".join(log.splitlines()[-30:])
        raise SystemExit(f"a run failed:\n{tail}")


def tokens_per_second(root: Path, name: str) -> float:
    metrics = json.loads((root / f"out-{name}" / "metrics.json").read_text())
    return float(metrics["summary"]["tokens_per_second"])


def final_loss(root: Path, name: str) -> tuple[float, float]:
    summary = json.loads((root / f"out-{name}" / "metrics.json").read_text())["summary"]
    return summary["first_loss"], summary["final_loss"]


def bench_ranks(root: Path, model: Path, data: Path) -> None:
    for nodes, per_node in ((1, 2), (2, 2)):
        name = f"ranks_{nodes}x{per_node}"
        log = run(spec(root, name, model, data, "sft_full", {"max_steps": 4}), nodes, per_node)
        outcome(log)
        trained = TRAINED.findall(log)  # every rank logs its first step
        print(f"ranks_seen_{nodes}x{per_node}: {len({int(rank) for rank, _world in trained})}")
        print(f"world_size_{nodes}x{per_node}: {max(int(world) for _rank, world in trained)}")


def bench_scaling(root: Path, model: Path, data: Path) -> None:
    rows, length = 16, 256
    figures = {}
    for per_node in (1, 2):
        name = f"scaling_1x{per_node}"
        params = {
            "max_steps": 12,
            "max_length": length,
            "batch_size": rows // per_node,
            "warmup_ratio": 0,
            "gradient_checkpointing": False,
        }
        outcome(run(spec(root, name, model, data, "sft_full", params), 1, per_node, threads=1))
        figures[per_node] = tokens_per_second(root, name)
        print(f"tokens_per_s_1x{per_node}: {figures[per_node]:.0f} tokens/s")
    print(f"scaling_1x2: {figures[2] / figures[1]:.2f} x")


PROBE = textwrap.dedent(
    """\
    import json, sys, torch
    from transformers import TrainerCallback
    from trainer.runner import run

    class Probe(TrainerCallback):
        '''The trained, still sharded model's logits on a fixed input, from rank 0.'''
        def on_train_end(self, args, state, control, model=None, **kwargs):
            ids = torch.arange(5, 37).reshape(2, 16)
            with torch.no_grad():
                logits = model(input_ids=ids).logits
            if state.is_world_process_zero:
                torch.save(logits, sys.argv[2])

    sys.exit(run(sys.argv[1], extra_callbacks=[Probe()]))
    """
)


def bench_reload(root: Path, model: Path, data: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    probe = root / "probe.py"
    probe.write_text(PROBE)
    for strategy in ("zero3", "fsdp2"):
        params = {"sharding": strategy, "max_steps": 6, "learning_rate": 1e-3}
        path = spec(root, strategy, model, data, "sft_full", params)
        logits = root / f"{strategy}-logits.pt"
        log = run(path, 1, 2, trainer=[sys.executable, str(probe), str(path), str(logits)])
        if "jingtiao: succeeded" not in log:
            why = re.findall(r"jingtiao: failed: (.+)", log)
            print(f"{strategy}_reload_max_abs_diff: n/a ({why[0] if why else 'failed'})")
            continue
        first, last = final_loss(root, strategy)
        reloaded = AutoModelForCausalLM.from_pretrained(root / f"out-{strategy}" / "model")
        with torch.no_grad():
            again = reloaded(input_ids=torch.arange(5, 37).reshape(2, 16)).logits
        difference = (again - torch.load(logits)).abs().max().item()
        print(f"{strategy}_loss_first: {first:.4f}")
        print(f"{strategy}_loss_final: {last:.4f}")
        print(f"{strategy}_reload_max_abs_diff: {difference:.2e}")


def bench_memory(root: Path, model: Path, data: Path) -> None:
    worst = 0.0
    for name, algorithm, processes, params in MEMORY_RUNS:
        settings = {"max_steps": 4, "max_length": 256, "batch_size": 4, **params}
        log = run(spec(root, name, model, data, algorithm, settings), 1, processes)
        outcome(log)
        peaks = [(float(p), float(e)) for p, e in PEAK.findall(log)]
        measured = max(peak for peak, _ in peaks)
        estimated = max(estimate for _, estimate in peaks)
        error = abs(estimated - measured) / measured * 100
        worst = max(worst, error)
        print(f"memory_{name}_measured: {measured:.3f} GiB")
        print(f"memory_{name}_estimated: {estimated:.3f} GiB")
    print(f"memory_estimate_error_pct: {worst:.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="ranks,scaling,reload,memory")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="jingtiao-distributed-") as folder:
        root = Path(folder)
        tiny = build_tiny_llm(root / "tiny", warm_up_steps=0)
        # ~28 M parameters: big enough that its tensors, not the interpreter, dominate
        mid = build_tiny_llm(
            root / "mid",
            hidden_size=512,
            num_layers=8,
            num_heads=8,
            intermediate_size=1408,
            vocab_size=8192,
            warm_up_steps=0,
        )
        data = write_sample_dataset("sft_messages", root / "sft.jsonl", rows=2000)
        print(f"cpus: {os.cpu_count()}")
        if "ranks" in parts:
            bench_ranks(root, tiny, data)
        if "scaling" in parts:
            bench_scaling(root, mid, data)
        if "reload" in parts:
            bench_reload(root, tiny, data)
        if "memory" in parts:
            bench_memory(root, mid, data)


if __name__ == "__main__":
    main()
