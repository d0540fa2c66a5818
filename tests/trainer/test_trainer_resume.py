"""Resuming a run from its checkpoint (issue 15, item 6): a run stopped at step 6 of 12
keeps its checkpoints; a run resumed from step 6 ends at step 12 with the very losses the
run would have had, had it not stopped (weights, optimiser, schedule and data position
restored)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from transformers import TrainerCallback

from trainer.output import CHECKPOINTS, staging_of

PARAMETERS = {
    "batch_size": 4,
    "max_length": 64,
    "logging_steps": 1,
    "eval_strategy": "steps",
    "warmup_ratio": 0.0,
    "lr_scheduler": "linear",
    "max_steps": 12,
    "save_steps": 3,
    "learning_rate": 5e-3,
}


class StopAfterSaving(TrainerCallback):
    """A stop from the platform (SIGTERM) just after the checkpoint of ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def _spec(path: Path, output: Path, **extra) -> Path:
    spec = json.loads(path.read_text())
    spec.update(output_dir=str(output), **extra)
    copy = path.with_name(f"{output.name}.json")
    copy.write_text(json.dumps(spec))
    return copy


@pytest.fixture
def spec(make_spec, tiny_llm, data):
    return make_spec(
        algorithm="sft_lora",
        scenario="llm/sft",
        base_model=tiny_llm,
        train=data["sft_messages"],
        parameters=PARAMETERS,
    )


def test_a_stopped_run_resumes_from_its_checkpoint_and_goes_on_as_if_never_stopped(
    spec, train, tmp_path
):
    stopped = train(_spec(spec, tmp_path / "stopped"), extra_callbacks=[StopAfterSaving(6)])
    assert stopped.status == 143 and stopped.last_line.endswith("terminated by SIGTERM")
    kept = staging_of(tmp_path / "stopped") / CHECKPOINTS
    # the last two are kept, the rest of the unfinished output is not
    assert sorted(p.name for p in kept.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    assert [p.name for p in kept.parent.iterdir()] == [CHECKPOINTS]
    assert not (tmp_path / "stopped" / "manifest.json").exists()

    resumed = train(_spec(spec, tmp_path / "resumed", resume_from=str(kept / "checkpoint-6")))
    assert resumed.status == 0, resumed.lines[-20:]
    steps = [r["step"] for r in resumed.history if "loss" in r]
    assert steps == list(range(7, 13))  # the step count goes on
    assert resumed.manifest["metrics"]["steps"] == 12

    whole = train(_spec(spec, tmp_path / "whole"))
    assert whole.status == 0
    expected = {r["step"]: r["loss"] for r in whole.history if "loss" in r}
    for record in resumed.history:
        if "loss" in record:
            assert record["loss"] == pytest.approx(expected[record["step"]], rel=1e-4)


def test_a_run_without_checkpoints_leaves_nothing_when_stopped(spec, train, tmp_path):
    params = {**PARAMETERS, "save_steps": 0}
    path = _spec(spec, tmp_path / "plain", parameters=params)

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 4:
                os.kill(os.getpid(), signal.SIGTERM)

    stopped = train(path, extra_callbacks=[StopAt()])
    assert stopped.status == 143
    assert not staging_of(tmp_path / "plain").exists()


def test_a_stopped_t2i_run_resumes_with_the_losses_it_would_have_had(
    make_spec, train, tiny_t2i, data, tmp_path
):
    params = {"max_steps": 8, "save_steps": 2, "logging_steps": 1, "batch_size": 2,
              "learning_rate": 1e-3, "lr_scheduler": "linear", "warmup_ratio": 0.0}  # fmt: skip
    spec = make_spec(
        algorithm="t2i_lora", scenario="t2i/finetune", base_model=tiny_t2i,
        train=data["t2i"], parameters=params,
    )  # fmt: skip

    whole = train(_spec(spec, tmp_path / "whole"))
    assert whole.status == 0
    kept = staging_of(tmp_path / "cut") / CHECKPOINTS
    cut = _spec(spec, tmp_path / "cut")
    from trainer.algorithms import t2i

    # the text-to-image loop is not transformers': the stop comes after its checkpoint
    original = t2i._checkpoint

    def checkpoint_then_stop(ctx, unet, optimizer, scheduler, kept_state):
        original(ctx, unet, optimizer, scheduler, kept_state)
        if kept_state["step"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    t2i._checkpoint = checkpoint_then_stop
    try:
        cut_run = train(cut)
    finally:
        t2i._checkpoint = original
    assert cut_run.status == 143
    assert sorted(p.name for p in kept.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    resumed = train(_spec(spec, tmp_path / "resumed", resume_from=str(kept / "checkpoint-4")))
    assert resumed.status == 0, resumed.lines[-20:]
    expected = {r["step"]: r["loss"] for r in whole.history if "loss" in r}
    got = {r["step"]: r["loss"] for r in resumed.history if "loss" in r}
    assert sorted(got) == [5, 6, 7, 8]
    for step, loss in got.items():
        assert loss == pytest.approx(expected[step], rel=1e-4), step


def test_a_resumed_runs_pace_counts_from_where_it_resumed(monkeypatch):
    """Neither the throughput nor the time left take the steps before the checkpoint
    for this run's: no spike of tokens per second, no ETA too short."""
    from trainer import progress
    from trainer.reporting import NullReporter

    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    tracker = progress.ProgressTracker(NullReporter(), report=False)
    tracker.started_from(100, tokens_seen=50_000)
    clock[0] += 10
    record = tracker.log(step=110, max_steps=200, epoch=1.0, values={}, tokens_seen=55_000)
    assert record["tokens_per_second"] == 500  # 5,000 tokens in 10 s, not 55,000
    assert record["eta_seconds"] == 90  # 10 steps took 10 s; 90 are left
