"""Training that goes on from a trained version (issue 15, item 6, ``start_from``): a LoRA
run trains the version's adapter further, a full run merges it first, and a LoRA on a full
version says in its manifest that it applies to that model."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.trainer.test_trainer_llm import FAST


@pytest.fixture(scope="module")
def first(tmp_path_factory, tiny_llm, data):
    """A LoRA SFT version, trained to step 30."""
    from tests.trainer.conftest import _make_spec
    from trainer.runner import run

    root = tmp_path_factory.mktemp("first")
    spec = _make_spec(
        root,
        algorithm="sft_lora",
        scenario="llm/sft",
        base_model=tiny_llm,
        train=data["sft_messages"],
        parameters={**FAST, "max_steps": 30, "learning_rate": 1e-2},
    )
    assert run(str(spec)) == 0
    return root / "output"


def _losses(outcome) -> list[float]:
    return [r["loss"] for r in outcome.history if "loss" in r]


def test_a_lora_run_goes_on_training_the_versions_adapter(make_spec, train, tiny_llm, data, first):
    history = json.loads((first / "metrics.json").read_text())["history"]
    ended_at = [r["loss"] for r in history if "loss" in r][-3:]
    params = {**FAST, "max_steps": 6, "learning_rate": 1e-2}
    fresh = train(
        make_spec(algorithm="sft_lora", scenario="llm/sft", base_model=tiny_llm,
                  train=data["sft_messages"], parameters=params)
    )  # fmt: skip
    assert fresh.status == 0
    fresh_start = _losses(fresh)[0]
    shutil.rmtree(fresh.output)  # the next run publishes into the same place
    goes_on = train(
        make_spec(algorithm="sft_lora", scenario="llm/sft", base_model=tiny_llm,
                  train=data["sft_messages"],
                  parameters={**params, "start_from": str(first), "lora_rank": 2})
    )  # fmt: skip
    assert goes_on.status == 0, goes_on.lines[-20:]
    # it starts where the version ended, far below a fresh adapter's first loss
    assert _losses(goes_on)[0] < fresh_start * 0.8
    assert _losses(goes_on)[0] < max(ended_at) * 1.3
    config = json.loads((goes_on.output / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 4 or config["r"] == 8  # the version's own rank, not the 2 asked
    assert goes_on.manifest["base_model"] == str(tiny_llm)


def test_a_full_run_trains_the_base_with_the_versions_adapter_merged(
    make_spec, train, tiny_llm, data, first
):
    params = {**FAST, "max_steps": 4, "learning_rate": 1e-4,
              "start_from": str(first)}  # fmt: skip
    outcome = train(
        make_spec(algorithm="sft_full", scenario="llm/sft", base_model=tiny_llm,
                  train=data["sft_messages"], parameters=params)
    )  # fmt: skip
    assert outcome.status == 0, outcome.lines[-20:]
    assert outcome.manifest["artifacts"]["model"] == "model"
    assert _losses(outcome)[0] < 5.0


def test_start_from_a_folder_without_a_model_is_refused(make_spec, train, tiny_llm, data, tmp_path):
    params = {**FAST, "max_steps": 2, "start_from": str(tmp_path)}
    outcome = train(
        make_spec(algorithm="sft_lora", scenario="llm/sft", base_model=tiny_llm,
                  train=data["sft_messages"], parameters=params)
    )  # fmt: skip
    assert outcome.status == 2 and "holds no trained model" in outcome.last_line
