"""Packed rows on attention without varlen kernels: no padding, and no example
ever sees another example's tokens."""

from __future__ import annotations

import torch
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from trainer.algorithms.sft import PackedRows


def _packed(*lengths: int, start: int = 1) -> dict:
    ids, token = [], start
    for length in lengths:
        ids.extend(range(token, token + length))
        token += length
    return {"input_ids": ids, "seq_lengths": list(lengths)}


def test_packed_rows_stay_rows_with_positions_restarting_at_each_example():
    collate = PackedRows(DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True))
    batch = collate([_packed(3, 2), _packed(4)])
    assert "attention_mask" not in batch
    assert batch["input_ids"].shape == (2, 5)  # two rows, not one flattened sequence
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]
    assert batch["labels"][1, 4].item() == -100  # the padding is not learned


def test_an_example_in_a_packed_row_gives_the_logits_it_gives_alone(tiny_llm):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llm).eval()
    collate = PackedRows(DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True))
    first, second = list(range(5, 12)), list(range(40, 46))
    packed = collate([{"input_ids": first + second, "seq_lengths": [7, 6]}])
    with torch.no_grad():
        together = model(
            input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False
        ).logits[0]
        alone = model(input_ids=torch.tensor([second])).logits[0]
    assert torch.allclose(together[7:], alone, atol=1e-5)
