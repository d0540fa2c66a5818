"""Jingtiao's LoRA SFT against LLaMA-Factory's, on this machine's CPU, in one run.

Both train the same tiny Llama-style model (built by ``trainer.tiny``), on the same
alpaca data, with the same LoRA rank and targets, sequence length, batch size and
number of steps. LLaMA-Factory is installed from PyPI into its own virtual
environment (its pins on transformers/TRL/PEFT differ from ours); the environment is
kept under ``~/.cache/jingtiao`` and reused by later runs.

Settings of each side (printed before the figures too):

- Jingtiao ``sft_lora`` through ``python -m trainer run``: its defaults, which include
  best-fit packing into rows of ``max_length`` (8 rows a step, ~2,000 tokens), gradient
  checkpointing, reentrant, and jemalloc as the process's malloc where the system has
  it (``trainer.allocator``; ``JINGTIAO_MALLOC=system`` keeps glibc's); fp32, SDPA.
- LLaMA-Factory ``stage: sft`` through ``llamafactory-cli train``: its defaults, which
  include one example a row padded to the batch's longest (8 examples a step, ~740
  tokens), gradient checkpointing, reentrant (``disable_gradient_checkpointing:
  false``, ``use_reentrant_gc: true``), and glibc's malloc; fp32, SDPA. Run a second
  time with ``neat_packing``: packed rows, no attention across examples, as Jingtiao's.

The same-batch figures run one plain script in each environment, both on glibc's malloc.

Tokens are counted the same way for both: the non-padding input tokens the training
loop consumed (``include_num_input_tokens_seen="non_padding"`` of transformers'
Trainer, which both use), divided by the Trainer's own ``train_runtime``. Peak memory
is the peak resident set size of each training process tree.

Usage: python benchmarks/trainer_vs_llamafactory.py [--steps N] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer.allocator import jemalloc_environment  # noqa: E402
from trainer.samples import ANIMALS, COLOURS  # noqa: E402
from trainer.tiny import build_tiny_llm  # noqa: E402

VENV = Path(
    os.environ.get("JINGTIAO_BENCH_VENV", Path.home() / ".cache" / "jingtiao" / "llamafactory-venv")
)
# LLaMA-Factory 0.9.5 caps transformers <= 5.6, TRL <= 0.24, PEFT 0.18, accelerate <= 1.11,
# datasets <= 4.0; torch is pinned so pip takes the local CPU wheel (find-links) and not
# a multi-gigabyte CUDA build.
PINS = [
    "llamafactory==0.9.5",
    "torch==2.13.0",
    "transformers==4.57.3",
    "trl==0.24.0",
    "peft==0.18.1",
    "accelerate==1.11.0",
    "datasets==4.0.0",
]
# Random weights: speed does not depend on what the model knows.
MODEL = {
    "hidden_size": 256,
    "num_layers": 4,
    "num_heads": 8,
    "intermediate_size": 688,
    "warm_up_steps": 0,
}
SEQ_LEN, BATCH, LORA_RANK, LORA_ALPHA = 256, 8, 8, 16
COMMON = f"LoRA r{LORA_RANK} alpha {LORA_ALPHA} on all linear layers, fp32, SDPA"
OUR_MALLOC = "jemalloc" if jemalloc_environment(os.environ) else "glibc"
SETTINGS = [
    f"jingtiao runs sft_lora with its defaults = {BATCH} best-fit packed rows of {SEQ_LEN} "
    f"tokens a step, gradient checkpointing on (reentrant), {OUR_MALLOC} malloc; {COMMON}",
    f"llamafactory runs stage sft with its defaults = {BATCH} examples a step, each padded "
    f"to the batch's longest, gradient checkpointing on (reentrant), glibc malloc; {COMMON}",
    f"llamafactory_packed adds neat_packing = {BATCH} packed rows of {SEQ_LEN} tokens a "
    "step, no attention across examples; otherwise as llamafactory",
]


def ensure_llamafactory() -> Path:
    cli = VENV / "bin" / "llamafactory-cli"
    if cli.exists():
        return cli
    print(f"installing LLaMA-Factory into {VENV} (first run only)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    done = subprocess.run([*pip, *PINS], capture_output=True, text=True)
    if done.returncode == 0:
        # PyPI's torchvision/torchaudio builds do not match the local CPU torch (their
        # operators fail to register); LLaMA-Factory needs them only for multimodal data,
        # and transformers falls back to PIL without them.
        subprocess.run(
            [
                str(VENV / "bin" / "python"),
                "-m",
                "pip",
                "uninstall",
                "-y",
                "-q",
                "torchvision",
                "torchaudio",
            ],
            check=False,
        )  # see run_llamafactory
    if done.returncode != 0 or not cli.exists():
        shutil.rmtree(VENV, ignore_errors=True)
        sys.exit(f"cannot install LLaMA-Factory ({' '.join(PINS)}):\n{done.stderr[-3000:]}")
    return cli


def write_data(folder: Path, rows: int = 600, seed: int = 0) -> Path:
    """Alpaca rows of very different lengths, as real instruction data has."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.jsonl"
    with path.open("w") as handle:
        for _ in range(rows):
            facts = []
            for _ in range(rng.randint(1, 22)):
                a, b = rng.randint(0, 9), rng.randint(0, 9)
                colour_fact = f"The {rng.choice(ANIMALS)} is {rng.choice(list(COLOURS))}."
                facts.append(rng.choice([colour_fact, f"{a} plus {b} is {a + b}."]))
            row = {"instruction": "Tell me some facts.", "input": "", "output": " ".join(facts)}
            handle.write(json.dumps(row) + "\n")
    (folder / "dataset_info.json").write_text(json.dumps({"bench": {"file_name": "train.jsonl"}}))
    return path


def measure(command: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Run ``command``; returns the peak RSS in bytes of its whole process tree."""
    peak = 0
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        root = psutil.Process(process.pid)
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                try:
                    procs = [root, *root.children(recursive=True)]
                    peak = max(peak, sum(p.memory_info().rss for p in procs))
                except psutil.Error:
                    pass
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        sampler.join()
    if process.returncode != 0:
        sys.exit(f"{command[0]} failed ({process.returncode}); log:\n{log.read_text()[-4000:]}")
    return max(peak, usage.ru_maxrss * 1024)


def run_jingtiao(work: Path, model: Path, data: Path, steps: int) -> tuple[float, int]:
    spec = {
        "job_id": 1,
        "scenario": "llm/sft",
        "algorithm": "sft_lora",
        "parameters": {
            "max_steps": steps,
            "batch_size": BATCH,
            "max_length": SEQ_LEN,
            "lora_rank": LORA_RANK,
            "lora_alpha": LORA_ALPHA,
            "lora_dropout": 0.05,
            "learning_rate": 1e-4,
            "logging_steps": 10,
            "precision": "fp32",
            # Our default, and LLaMA-Factory's: stated so the comparison stays like for like.
            "gradient_checkpointing": True,
        },
        "base_model": str(model),
        "train_data": str(data),
        "validation_data": None,
        "test_data": None,
        "output_dir": str(work / "jingtiao-out"),
        "report": None,
    }
    (work / "spec.json").write_text(json.dumps(spec))
    peak = measure(
        [sys.executable, "-m", "trainer", "run", "--spec", str(work / "spec.json")],
        work / "jingtiao.log",
    )
    summary = json.loads((work / "jingtiao-out" / "metrics.json").read_text())["summary"]
    return summary["tokens_seen"] / summary["train_runtime_seconds"], peak


def run_llamafactory(
    cli: Path, work: Path, model: Path, steps: int, *, packed: bool
) -> tuple[float, int]:
    """LLaMA-Factory as it trains by default (one example a row, padded), or with
    `neat_packing`: several examples a row without attention across them, as
    Jingtiao's SFT does, so both put the same number of tokens in a step."""
    name = "llamafactory-packed" if packed else "llamafactory"
    out = work / f"{name}-out"
    config = textwrap.dedent(f"""\
        model_name_or_path: {model}
        stage: sft
        do_train: true
        finetuning_type: lora
        lora_rank: {LORA_RANK}
        lora_alpha: {LORA_ALPHA}
        lora_dropout: 0.05
        lora_target: all
        dataset: bench
        dataset_dir: {work / "data"}
        template: chatml
        cutoff_len: {SEQ_LEN}
        overwrite_cache: true
        preprocessing_num_workers: 1
        output_dir: {out}
        overwrite_output_dir: true
        per_device_train_batch_size: {BATCH}
        gradient_accumulation_steps: 1
        max_steps: {steps}
        learning_rate: 1.0e-4
        lr_scheduler_type: cosine
        warmup_ratio: 0.03
        logging_steps: 10
        save_strategy: "no"
        report_to: none
        bf16: false
        include_num_input_tokens_seen: non_padding
        dataloader_num_workers: 0
        disable_gradient_checkpointing: false
        use_reentrant_gc: true
        """)
    if packed:
        # With neat packing LLaMA-Factory's mask holds example numbers, which its
        # "non_padding" count misreads; count every token instead (its rows are
        # packed full, so the little padding left favours it).
        config = config.replace("include_num_input_tokens_seen: non_padding", "")
        config += "packing: true\nneat_packing: true\ninclude_num_input_tokens_seen: true\n"
    (work / f"{name}.yaml").write_text(config)
    # LLaMA-Factory imports torchaudio at start-up for its audio plugin, and no PyPI
    # torchaudio loads against the local CPU torch 2.13: an empty stand-in module lets
    # it start; text SFT never calls it.
    shims = work / "shims" / "torchaudio"
    shims.mkdir(parents=True, exist_ok=True)
    (shims / "__init__.py").write_text('"""Stand-in: audio is not used by this benchmark."""\n')
    env = {
        **os.environ,
        "DISABLE_VERSION_CHECK": "1",
        "HF_HUB_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": str(work / "shims"),
    }
    peak = measure([str(cli), "train", str(work / f"{name}.yaml")], work / f"{name}.log", env=env)
    # Every log entry carries the running totals; the last one is the end of training.
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    final = [entry for entry in history if "train_runtime" in entry][-1]
    return final["num_input_tokens_seen"] / final["train_runtime"], peak


# One forward and backward pass of the same packed batch (8 rows of 256 tokens,
# examples of 32 tokens each) through the same LoRA model, with the reentrant gradient
# checkpointing both trainers use, in each environment: the memory of equal work,
# whatever each pipeline puts in a step.
SAME_BATCH = textwrap.dedent("""\
    import resource, sys, torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1], attn_implementation="sdpa")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.enable_input_require_grads()
    model.train()
    model = get_peft_model(model, LoraConfig(
        r=%(rank)d, lora_alpha=%(alpha)d, target_modules="all-linear", task_type="CAUSAL_LM"))
    vocab = model.config.vocab_size
    ids = torch.randint(5, vocab - 1, (%(batch)d, %(seq)d))
    positions = torch.arange(32).repeat(%(seq)d // 32).unsqueeze(0).expand(%(batch)d, -1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(3):
        out = model(input_ids=ids, position_ids=positions, labels=ids, use_cache=False)
        out.loss.backward()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
""") % {"rank": LORA_RANK, "alpha": LORA_ALPHA, "batch": BATCH, "seq": SEQ_LEN}


def same_batch_mib(python: Path | str, model: Path, runs: int = 3) -> int:
    """MiB the same packed batch adds over the loaded model, in one environment
    (the median of a few fresh processes: one peak RSS is noisy by ±50 MiB)."""
    results = []
    for _ in range(runs):
        done = subprocess.run(
            [str(python), "-c", SAME_BATCH, str(model)], capture_output=True, text=True, check=True
        )
        results.append(int(done.stdout.strip().splitlines()[-1]))
    return sorted(results)[len(results) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    cli = ensure_llamafactory()
    work = Path(tempfile.mkdtemp(prefix="jingtiao-bench-"))
    try:
        model = build_tiny_llm(work / "model", **MODEL)
        data = write_data(work / "data")
        print(
            f"model {MODEL}, seq {SEQ_LEN}, batch {BATCH}, LoRA r{LORA_RANK}, "
            f"{args.steps} steps, {os.cpu_count()} CPUs",
            flush=True,
        )
        for line in SETTINGS:
            print(line, flush=True)
        ours, ours_peak = run_jingtiao(work, model, data, args.steps)
        theirs, theirs_peak = run_llamafactory(cli, work, model, args.steps, packed=False)
        packed, packed_peak = run_llamafactory(cli, work, model, args.steps, packed=True)
        ours_batch = same_batch_mib(sys.executable, model)
        theirs_batch = same_batch_mib(VENV / "bin" / "python", model)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    mib = 2**20
    print(f"jingtiao_tokens_per_s: {ours:.1f} tokens/s")
    print(f"llamafactory_tokens_per_s: {theirs:.1f} tokens/s")
    print(f"jingtiao_peak_rss: {ours_peak / mib:.0f} MiB")
    print(f"llamafactory_peak_rss: {theirs_peak / mib:.0f} MiB")
    print(f"tokens_per_s_ratio: {ours / theirs:.2f} x")
    print(f"llamafactory_packed_tokens_per_s: {packed:.1f} tokens/s")
    print(f"llamafactory_packed_peak_rss: {packed_peak / mib:.0f} MiB")
    print(f"tokens_per_s_ratio_packed: {ours / packed:.2f} x")
    print(f"jingtiao_stack_same_batch_mib: {ours_batch} MiB")
    print(f"llamafactory_stack_same_batch_mib: {theirs_batch} MiB")


if __name__ == "__main__":
    main()
