"""Evaluating a version beside its base model (issue 15, item 5; trainer/evaluate.py) on
real tiny models: the loss and perplexity of both, sample answers, preference accuracy,
a reward model's accuracy, and a grid of images with and without a LoRA."""

from __future__ import annotations

import json

import pytest

from trainer.evaluate import EvaluationError, evaluate


def _results(folder):
    return json.loads((folder / "results.json").read_text())


def test_a_lora_version_is_measured_beside_its_base_with_sample_answers(
    llm_version,
    tiny_llm,
    data,
    tmp_path,
):
    steps = []
    final = evaluate(
        llm_version, tiny_llm, data["sft_messages_val"], "llm/sft", tmp_path / "e", 8,
        lambda p, s: steps.append(p),
    )  # fmt: skip
    found = _results(final)
    assert steps[-1] == 1.0 and found["rows"] == 8
    version, base = found["sides"]["version"], found["sides"]["base"]
    assert version["loss"] > 0 and base["loss"] > 0 and version["loss"] != base["loss"]
    assert version["perplexity"] == pytest.approx(2.718281828 ** version["loss"], rel=1e-6)
    assert len(found["samples"]) == 3
    assert all(s["reference"] and "version" in s and "base" in s for s in found["samples"])


def test_preference_pairs_give_how_often_the_chosen_answer_wins(
    llm_version,
    tiny_llm,
    data,
    tmp_path,
):
    final = evaluate(
        llm_version, tiny_llm, data["preference_val"], "llm/rl", tmp_path / "p", 6,
        lambda p, s: None,
    )  # fmt: skip
    sides = _results(final)["sides"]
    for side in ("version", "base"):
        assert 0 <= sides[side]["preference_accuracy"] <= 1 and sides[side]["pairs"] == 6


def test_data_with_no_usable_row_is_refused(llm_version, tiny_llm, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("not json\n")
    with pytest.raises(EvaluationError, match="no well-formed row"):
        evaluate(llm_version, tiny_llm, empty, "llm/sft", tmp_path / "x", 5, lambda p, s: None)
    assert not (tmp_path / "x").exists()


def test_a_t2i_version_draws_a_grid_with_and_without_its_lora(
    t2i_version, tiny_t2i, data, tmp_path
):
    final = evaluate(
        t2i_version, tiny_t2i, data["t2i_val"], "t2i/finetune", tmp_path / "g", 20,
        lambda p, s: None,
    )  # fmt: skip
    grid = _results(final)["images"]
    assert len(grid) == 4 and [entry["seed"] for entry in grid] == [0, 1, 2, 3]
    for entry in grid:
        mine, theirs = (final / entry["version"]).read_bytes(), (final / entry["base"]).read_bytes()
        assert mine[:4] == b"\x89PNG" and mine != theirs
