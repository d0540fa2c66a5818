"""Every LLM algorithm trains on CPU, its loss falls, and its output reloads and generates."""

import json

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    TrainerCallback,
)

FAST = {
    "batch_size": 8,
    "max_length": 64,
    "logging_steps": 1,
    "eval_strategy": "steps",
    "eval_steps": 10,
    "warmup_ratio": 0.0,
    "lr_scheduler": "constant",
}


def generate(model, tokenizer, question="What is 3 plus 4?"):
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        output = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    new_tokens = output[0, prompt["input_ids"].shape[1] :]
    assert len(new_tokens) > 0
    return tokenizer.decode(new_tokens, skip_special_tokens=True)


def load_adapter(base, adapter):
    from peft import PeftModel

    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).eval()


def test_sft_lora_learns_chat_data_and_saves_an_adapter_and_merged_weights(
    make_spec, train, tiny_llm, data
):
    spec = make_spec(
        algorithm="sft_lora",
        scenario="llm/sft",
        base_model=tiny_llm,
        train=data["sft_messages"],
        validation=data["sft_messages_val"],
        test=data["sft_alpaca_val"],
        parameters={**FAST, "max_steps": 30, "learning_rate": 1e-2, "save_merged": True},
    )
    outcome = train(spec)
    assert outcome.status == 0, outcome.lines[-20:]
    assert outcome.last_line == f"jingtiao: succeeded: output saved to {outcome.output}"
    assert outcome.fell("loss", by=0.15)
    manifest = outcome.manifest
    assert manifest["artifacts"] == {
        "adapter": "adapter",
        "tokenizer": "adapter",
        "merged": "merged",
    }
    summary = manifest["metrics"]
    assert summary["validation_loss"] < summary["test_loss"] + 5  # both evaluated
    assert len(outcome.series("eval_loss")) >= 3 and len(outcome.series("test_loss")) >= 3
    assert summary["best_validation_metric"] == pytest.approx(min(outcome.series("eval_loss")))
    assert summary["validation_loss"] == pytest.approx(summary["best_validation_metric"], rel=1e-4)

    tokenizer = AutoTokenizer.from_pretrained(outcome.output / "adapter")
    adapted = load_adapter(tiny_llm, outcome.output / "adapter")
    merged = AutoModelForCausalLM.from_pretrained(outcome.output / "merged").eval()
    ids = tokenizer("3 plus 4 is 7.", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(adapted(ids).logits, merged(ids).logits, atol=1e-4)
    assert isinstance(generate(merged, tokenizer), str)


class CountRecomputedLayers(TrainerCallback):
    """How many decoder layers the model being trained recomputes in its backward pass:
    reentrant checkpointing leaves one CheckpointFunction node per layer in the graph."""

    recomputed: int | None = None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.recomputed is None:  # after a step: the trainer has put the model in training mode
            ids = torch.tensor([[5, 6, 7, 8]])
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
            self.recomputed = _graph_nodes(loss).count("CheckpointFunctionBackward")


def _graph_nodes(tensor: torch.Tensor) -> list[str]:
    names, seen, pending = [], set(), [tensor.grad_fn]
    while pending:
        node = pending.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(type(node).__name__)
        pending.extend(parent for parent, _ in node.next_functions)
    return names


@pytest.mark.parametrize(
    ("parameters", "recomputed"),
    [({}, 2), ({"gradient_checkpointing": False}, 0)],
    ids=["by-default", "turned-off"],
)
def test_sft_recomputes_every_decoder_layer_unless_checkpointing_is_turned_off(
    make_spec, train, tiny_llm, data, parameters, recomputed
):
    spec = make_spec(
        algorithm="sft_lora",
        scenario="llm/sft",
        base_model=tiny_llm,
        train=data["sft_alpaca"],
        parameters={**FAST, "max_steps": 2, **parameters},
    )
    counter = CountRecomputedLayers()
    outcome = train(spec, extra_callbacks=[counter])
    assert outcome.status == 0, outcome.lines[-20:]
    assert counter.recomputed == recomputed  # the tiny model has two decoder layers


def test_sft_full_learns_alpaca_data(make_spec, train, tiny_llm, data):
    spec = make_spec(
        algorithm="sft_full",
        scenario="llm/sft",
        base_model=tiny_llm,
        train=data["sft_alpaca"],
        parameters={**FAST, "max_steps": 25, "learning_rate": 3e-3},
    )
    outcome = train(spec)
    assert outcome.status == 0, outcome.lines[-20:]
    assert outcome.fell("loss", by=0.3)
    assert outcome.manifest["artifacts"] == {"model": "model", "tokenizer": "model"}
    model = AutoModelForCausalLM.from_pretrained(outcome.output / "model")
    generate(model, AutoTokenizer.from_pretrained(outcome.output / "model"))


def test_pretraining_learns_raw_text(make_spec, train, tiny_llm, data):
    spec = make_spec(
        algorithm="pretrain",
        scenario="llm/pretrain",
        base_model=tiny_llm,
        train=data["pretrain"],
        validation=data["pretrain_val"],
        parameters={**FAST, "max_steps": 25, "learning_rate": 3e-3},
    )
    outcome = train(spec)
    assert outcome.status == 0, outcome.lines[-20:]
    assert outcome.fell("loss", by=0.3)
    assert (
        outcome.fell("eval_loss", by=0.0)
        or outcome.series("eval_loss")[-1] < outcome.series("eval_loss")[0]
    )
    model = AutoModelForCausalLM.from_pretrained(outcome.output / "model")
    tokenizer = AutoTokenizer.from_pretrained(outcome.output / "model")
    # what was saved is the trained model: on held-out text it beats its own untrained
    # architecture by far, and it generates from a prompt
    held_out = json.loads(data["pretrain_val"].read_text().splitlines()[0])["text"]
    batch = tokenizer(held_out, return_tensors="pt")
    torch.manual_seed(0)
    untrained = AutoModelForCausalLM.from_config(model.config)
    with torch.no_grad():
        trained_loss = model(**batch, labels=batch["input_ids"]).loss.item()
        untrained_loss = untrained(**batch, labels=batch["input_ids"]).loss.item()
        prompt = tokenizer("The cat is", return_tensors="pt")
        out = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert trained_loss < 0.8 * untrained_loss, (trained_loss, untrained_loss)
    assert out.shape[1] > prompt["input_ids"].shape[1]


def test_a_reward_model_learns_to_prefer_the_chosen_answer(make_spec, train, tiny_llm, data):
    spec = make_spec(
        algorithm="reward_model",
        scenario="llm/reward_model",
        base_model=tiny_llm,
        train=data["preference"],
        validation=data["preference_val"],
        parameters={**FAST, "max_steps": 16, "learning_rate": 3e-3},
    )
    outcome = train(spec)
    assert outcome.status == 0, outcome.lines[-20:]
    assert outcome.fell("loss", by=0.5)
    folder = outcome.output / "model"
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)

    def score(answer):
        text = tokenizer.apply_chat_template(
            [
                {"role": "user", "content": "What is 2 plus 5?"},
                {"role": "assistant", "content": answer},
            ],
            tokenize=False,
        )
        with torch.no_grad():
            return model(**tokenizer(text, return_tensors="pt")).logits[0, 0].item()

    assert score("2 plus 5 is 7.") > score("I do not know.")


def test_dpo_lowers_its_loss_and_saves_a_lora_adapter(make_spec, train, tiny_llm, data):
    spec = make_spec(
        algorithm="dpo",
        scenario="llm/rl",
        base_model=tiny_llm,
        train=data["preference"],
        test=data["preference_val"],
        parameters={**FAST, "max_steps": 16, "learning_rate": 5e-3},
    )
    outcome = train(spec)
    assert outcome.status == 0, outcome.lines[-20:]
    assert outcome.fell("loss", by=0.2)
    assert "test_loss" in outcome.manifest["metrics"]
    model = load_adapter(tiny_llm, outcome.output / "adapter")
    generate(model, AutoTokenizer.from_pretrained(outcome.output / "adapter"))


def test_grpo_raises_the_rule_reward(make_spec, train, tiny_llm, data):
    # Completions containing a digit earn 1: about half do at first, so the group
    # comparison has a signal from the very first step.
    spec = make_spec(
        algorithm="grpo",
        scenario="llm/rl",
        base_model=tiny_llm,
        train=data["prompts"],
        parameters={
            **FAST,
            "max_steps": 24,
            "learning_rate": 3e-3,
            "use_lora": False,
            "num_generations": 4,
            "max_completion_length": 8,
            "reward_kind": "regex",
            "reward_pattern": "[0-9]",
        },
    )
    outcome = train(spec)
    assert outcome.status == 0, outcome.lines[-20:]
    assert outcome.rose("reward", by=0.15), outcome.series("reward")
    model = AutoModelForCausalLM.from_pretrained(outcome.output / "model")
    generate(model, AutoTokenizer.from_pretrained(outcome.output / "model"))
