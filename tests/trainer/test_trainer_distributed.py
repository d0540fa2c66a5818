"""A sharded run on two CPU processes gathers a plain model that gives the trained logits.

The trainer runs under torchrun as the executors start it (two processes, gloo);
a callback takes the trained model's logits on a fixed input while the weights are
still sharded, and the test reloads the published model with transformers alone.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

PROBE = textwrap.dedent(
    """\
    import sys, torch
    from transformers import TrainerCallback
    from trainer.runner import run

    class Probe(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            ids = torch.arange(5, 37).reshape(2, 16)
            with torch.no_grad():  # every rank takes part: ZeRO-3 gathers each layer
                logits = model(input_ids=ids).logits
            if state.is_world_process_zero:
                torch.save(logits, sys.argv[2])

    sys.exit(run(sys.argv[1], extra_callbacks=[Probe()]))
    """
)


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_zero3_on_two_processes_saves_a_model_that_reloads_with_the_trained_logits(
    tiny_llm, data, make_spec, tmp_path, repo_root
):
    import torch
    from transformers import AutoModelForCausalLM

    spec = make_spec(
        algorithm="sft_full",
        scenario="llm/sft",
        base_model=tiny_llm,
        train=data["sft_messages"],
        parameters={
            "sharding": "zero3",
            "max_steps": 6,
            "batch_size": 2,
            "max_length": 64,
            "learning_rate": 1e-3,
            "logging_steps": 1,
        },
    )
    probe, logits = tmp_path / "probe.py", tmp_path / "logits.pt"
    probe.write_text(PROBE)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--node-rank=0"]
    launcher += ["--nproc-per-node=2", "--master-addr=127.0.0.1", f"--master-port={_port()}"]
    result = subprocess.run(
        [*launcher, "--no-python", sys.executable, str(probe), str(spec), str(logits)],
        env={"PYTHONPATH": str(repo_root), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[rank 1] jingtiao: succeeded" in result.stdout
    assert "sharding: zero3, config written to" in result.stdout

    output = json.loads(spec.read_text())["output_dir"]
    summary = json.loads((tmp_path / "output" / "metrics.json").read_text())["summary"]
    assert summary["final_loss"] < summary["first_loss"]
    reloaded = AutoModelForCausalLM.from_pretrained(f"{output}/model")  # no DeepSpeed
    with torch.no_grad():
        again = reloaded(input_ids=torch.arange(5, 37).reshape(2, 16)).logits
    assert (again - torch.load(logits)).abs().max().item() <= 1e-5
