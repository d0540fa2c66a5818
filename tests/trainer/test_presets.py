"""参数预设: each algorithm's presets, fitted to the base model's size, stay valid."""

from __future__ import annotations

import jsonschema
import pytest

from trainer.catalog import ALGORITHMS
from trainer.presets import QUICK_STEPS, presets

BY_CODE = {info.code: info for info in ALGORITHMS}
SIZES = (None, 120_000, 7_600_000_000, 72_000_000_000)


def _values(code: str, parameters: int | None, preset: str) -> dict:
    found = {p.code: p for p in presets(code, BY_CODE[code].parameters_schema, parameters)}
    return found[preset].values


@pytest.mark.parametrize("code", sorted(BY_CODE))
@pytest.mark.parametrize("parameters", SIZES)
def test_every_preset_is_a_valid_set_of_the_algorithms_own_parameters(code, parameters):
    schema = BY_CODE[code].parameters_schema
    props = schema["properties"]
    found = presets(code, schema, parameters)
    assert [p.code for p in found] == ["recommended", "quick", "thorough"]
    for preset in found:
        assert preset.name and preset.name_zh and preset.description_zh
        assert set(preset.values) <= set(props)
        complete = {name: prop["default"] for name, prop in props.items()}
        without_draft = {key: value for key, value in schema.items() if key != "$schema"}
        jsonschema.validate({**complete, **preset.values}, without_draft)


def test_learning_rate_and_batch_follow_the_models_size():
    assert _values("sft_full", 120_000_000, "recommended")["learning_rate"] == 2e-5
    assert _values("sft_full", 7_600_000_000, "recommended")["learning_rate"] == 1e-5
    big = _values("sft_full", 72_000_000_000, "recommended")
    assert big["learning_rate"] == 5e-6
    assert (big["batch_size"], big["gradient_accumulation_steps"]) == (1, 16)
    assert big["gradient_checkpointing"] is True
    small = _values("sft_full", 120_000_000, "recommended")
    assert (small["batch_size"], small["gradient_checkpointing"]) == (8, False)


def test_lora_ranks_grow_with_the_model_and_alpha_follows():
    small = _values("sft_lora", 500_000_000, "recommended")
    large = _values("sft_lora", 72_000_000_000, "recommended")
    assert (small["lora_rank"], small["lora_alpha"]) == (8, 16)
    assert (large["lora_rank"], large["lora_alpha"]) == (16, 32)
    assert large["learning_rate"] == 1e-4


def test_pairs_hold_half_the_batch_and_grpo_keeps_its_own():
    dpo = _values("dpo", 7_600_000_000, "recommended")
    assert (dpo["batch_size"], dpo["gradient_accumulation_steps"]) == (1, 16)
    assert dpo["learning_rate"] == 5e-6  # DPO trains a LoRA adapter by default
    grpo_defaults = BY_CODE["grpo"].parameters_schema["properties"]
    grpo = _values("grpo", 7_600_000_000, "recommended")
    assert grpo["batch_size"] == grpo_defaults["batch_size"]["default"]


def test_an_unknown_size_keeps_the_algorithms_defaults():
    props = BY_CODE["t2i_lora"].parameters_schema["properties"]
    recommended = _values("t2i_lora", None, "recommended")
    assert all(recommended[name] == props[name]["default"] for name in recommended)


def test_a_quick_try_is_short_and_evaluates_and_thorough_is_long_and_stops_early():
    quick = _values("sft_lora", 7_600_000_000, "quick")
    assert quick["max_steps"] == QUICK_STEPS and quick["eval_strategy"] == "steps"
    assert quick["eval_steps"] == QUICK_STEPS // 2 and quick["logging_steps"] == 1
    thorough = _values("sft_lora", 7_600_000_000, "thorough")
    recommended = _values("sft_lora", 7_600_000_000, "recommended")
    assert thorough["max_steps"] == 0 and thorough["epochs"] >= 5
    assert thorough["learning_rate"] == recommended["learning_rate"] / 2
    assert thorough["early_stopping_patience"] == 2
