"""The memory estimate (trainer/memory.py) and the sharding configs (trainer/sharding.py).

The estimate's agreement with measured peaks is checked by the real runs
(tests/scheduler/test_distributed.py) and measured in benchmarks/distributed.py; here,
its parts: the shape it reads, what each strategy divides, what it advises.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from trainer import memory, sharding
from trainer.catalog import get_algorithm
from trainer.spec import resolve_parameters

# Qwen2-7B's shape (its config.json, without weights): 7.6 B parameters.
QWEN2_7B = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "tie_word_embeddings": False,
}
GIB = memory.GIB


@pytest.fixture
def qwen7b(tmp_path: Path) -> Path:
    folder = tmp_path / "qwen2-7b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(QWEN2_7B))
    return folder


def work(folder: Path, algorithm: str = "sft_full", *, world: int = 8, **params) -> memory.Workload:
    spec = SimpleNamespace(
        algorithm=algorithm,
        parameters=resolve_parameters(get_algorithm(algorithm), params),
        base_model=str(folder),
    )
    return memory.workload(spec, world_size=world, processes_per_node=8, device_kind="cuda")


def test_the_parameter_count_is_exact_from_safetensors_and_close_from_the_config(tiny_llm):
    from transformers import AutoModelForCausalLM

    counted = AutoModelForCausalLM.from_pretrained(tiny_llm).num_parameters()
    assert memory.read_shape(tiny_llm).parameters == counted


def test_a_7b_model_from_its_config_alone(qwen7b):
    shape = memory.read_shape(qwen7b)
    assert 7.5e9 < shape.parameters < 7.7e9  # Qwen2-7B: 7.62 B
    assert (shape.layers, shape.hidden, shape.kv_heads) == (28, 3584, 4)


def test_full_fine_tuning_a_7b_model_needs_about_16_bytes_a_parameter_unsharded(qwen7b):
    one = work(qwen7b, max_length=2048, batch_size=1, world=1)
    found = memory.estimate(replace(one, sharding="ddp"))
    states = found.parts["weights"] + found.parts["gradients"] + found.parts["optimiser"]
    assert states / memory.read_shape(qwen7b).parameters == pytest.approx(16, rel=0.01)
    assert found.gib > 112  # does not fit an 80 GiB device


def test_sharding_divides_what_it_shards(qwen7b):
    def at(strategy: str) -> memory.Estimate:
        return memory.estimate(
            replace(work(qwen7b, max_length=2048, batch_size=1), sharding=strategy)
        )

    ddp, zero2, zero3, fsdp2, offload = map(at, ("ddp", "zero2", "zero3", "fsdp2", "zero3_offload"))
    assert zero2.parts["weights"] == ddp.parts["weights"]  # ZeRO-2 keeps whole weights
    # DeepSpeed's 16 bytes of optimiser state a parameter (fp32 master copy, two moments,
    # fp32 gradient partition), over 8 ranks, against AdamW's 8 on every DDP rank
    assert zero2.parts["optimiser"] == ddp.parts["optimiser"] * 2 // 8
    assert ddp.parts["gradients"] == 2 * zero2.parts["weights"]  # DDP's buckets
    assert zero3.parts["weights"] < ddp.parts["weights"] / 4
    assert zero3.parts["activations"] == ddp.parts["activations"]  # never sharded
    assert offload.parts["optimiser"] == 0
    assert ddp.total > zero2.total > zero3.total > offload.total
    assert fsdp2.total < zero2.total


def test_lora_trains_a_sliver_of_the_weights(qwen7b):
    full = memory.estimate(replace(work(qwen7b), sharding="ddp"))
    lora = memory.estimate(replace(work(qwen7b, "sft_lora"), sharding="ddp"))
    assert lora.parts["optimiser"] < full.parts["optimiser"] / 50
    assert lora.parts["weights"] == full.parts["weights"]


def test_checkpointing_keeps_one_layer_of_activations_not_all(qwen7b):
    on = memory.estimate(work(qwen7b, max_length=4096, gradient_checkpointing=True))
    off = memory.estimate(work(qwen7b, max_length=4096, gradient_checkpointing=False))
    assert off.parts["activations"] > 4 * on.parts["activations"]


def test_auto_takes_the_least_sharding_that_fits(qwen7b):
    eighty = 80 * GIB
    full = work(qwen7b, max_length=2048, batch_size=1)
    assert memory.choose_sharding(full, capacity=eighty) == "zero2"
    lora = work(qwen7b, "sft_lora", max_length=2048, batch_size=1)
    assert memory.choose_sharding(lora, capacity=eighty) == "ddp"
    assert memory.choose_sharding(replace(full, world_size=1), capacity=eighty) == "ddp"
    # nothing fits a 16 GiB device on one node: the most sharding there is
    assert memory.choose_sharding(full, capacity=16 * GIB) == "zero3_offload"


def test_what_does_not_fit_is_told_what_would(qwen7b):
    one_device = replace(work(qwen7b, max_length=2048, world=1), processes_per_node=1)
    found = memory.fit(one_device, 80 * GIB, available=memory.LEAST_SHARDING_FIRST)

    assert not found.fits
    assert "lora" in found.remedies
    # the same job on 8 devices does fit, sharded
    assert memory.fit(work(qwen7b), 80 * GIB, available=memory.LEAST_SHARDING_FIRST).fits
    eight = replace(work(qwen7b, max_length=32768, batch_size=4), sharding="zero3")
    advice = memory.fit(eight, 80 * GIB, available=memory.LEAST_SHARDING_FIRST).remedies
    assert any(code.startswith("sequence:") for code in advice)


def test_a_folder_without_a_language_models_config_has_no_estimate(tmp_path, tiny_t2i):
    with pytest.raises(memory.ShapeError):
        memory.read_shape(tiny_t2i)
    with pytest.raises(memory.ShapeError):
        memory.read_shape(tmp_path)


def test_zero_configs_gather_a_plain_checkpoint_and_leave_sizes_to_transformers():
    three = sharding.deepspeed_config("zero3")
    assert three["zero_optimization"]["stage"] == 3
    assert three["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert three["train_micro_batch_size_per_gpu"] == "auto"
    offload = sharding.deepspeed_config("zero3_offload")["zero_optimization"]
    assert offload["offload_param"]["device"] == offload["offload_optimizer"]["device"] == "cpu"
    assert sharding.deepspeed_config("zero2")["zero_optimization"]["stage"] == 2


def test_fsdp2_wraps_the_decoder_layers_and_refuses_cpu_processes(tiny_llm, tmp_path):
    arguments = dict(
        world_size=2,
        backend="nccl",
        folder=tmp_path,
        base_model=str(tiny_llm),
        checkpointing=True,
        is_main=True,
    )
    found = sharding.training_arguments("fsdp2", device_kind="cuda", **arguments)
    assert found["fsdp_config"]["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]
    assert found["fsdp_config"]["fsdp_version"] == 2
    assert json.loads((tmp_path / "fsdp.json").read_text()) == found["fsdp_config"]
    # accelerate applies FSDP to accelerator processes only: on CPUs it would not shard
    with pytest.raises(sharding.ShardingError, match="choose zero2 or zero3"):
        sharding.training_arguments("fsdp2", device_kind="cpu", **arguments)
    assert "fsdp2" not in sharding.available("cpu")
    assert (
        sharding.training_arguments("zero3", device_kind="cpu", **{**arguments, "world_size": 1})
        == {}
    )
