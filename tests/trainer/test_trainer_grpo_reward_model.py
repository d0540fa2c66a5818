"""GRPO rewarded by a reward model trained on the platform (issue 3, item 1): the
reward model job's output folder is the reward, as a user picks it on the form."""

import json

from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.trainer.test_trainer_llm import FAST, generate


def _own_output(spec, name: str):
    """The same spec writing to its own folder, so two runs in one test do not meet."""
    data = json.loads(spec.read_text())
    data["output_dir"] = str(spec.parent / name)
    path = spec.parent / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def test_grpo_learns_from_a_reward_model_trained_first(make_spec, train, tiny_llm, data):
    judge = train(
        _own_output(
            make_spec(
                algorithm="reward_model",
                scenario="llm/reward_model",
                base_model=tiny_llm,
                train=data["preference"],
                parameters={**FAST, "max_steps": 8, "learning_rate": 3e-3},
            ),
            "judge",
        )
    )
    assert judge.status == 0, judge.lines[-20:]

    spec = make_spec(
        algorithm="grpo",
        scenario="llm/rl",
        base_model=tiny_llm,
        train=data["prompts"],
        parameters={
            **FAST,
            "max_steps": 6,
            "learning_rate": 3e-3,
            "use_lora": False,
            "num_generations": 4,
            "max_completion_length": 8,
            "reward_kind": "reward_model",
            "reward_model_path": str(judge.output),
        },
    )
    outcome = train(spec)

    assert outcome.status == 0, outcome.lines[-20:]
    rewards = outcome.series("reward")
    assert len(rewards) == 6 and len(set(rewards)) > 1  # the judge scores, and scores differ
    resolved = json.loads((outcome.output / "parameters.json").read_text())
    assert resolved["reward_kind"] == "reward_model"
    model = AutoModelForCausalLM.from_pretrained(outcome.output / "model")
    generate(model, AutoTokenizer.from_pretrained(outcome.output / "model"))


def test_grpo_refuses_an_output_that_is_not_a_reward_model(make_spec, train, tiny_llm, data):
    sft = train(
        _own_output(
            make_spec(
                algorithm="sft_lora",
                scenario="llm/sft",
                base_model=tiny_llm,
                train=data["sft_alpaca"],
                parameters={**FAST, "max_steps": 2},
            ),
            "sft",
        )
    )
    assert sft.status == 0, sft.lines[-20:]
    outcome = train(
        make_spec(
            algorithm="grpo",
            scenario="llm/rl",
            base_model=tiny_llm,
            train=data["prompts"],
            parameters={
                **FAST,
                "max_steps": 2,
                "num_generations": 4,
                "reward_kind": "reward_model",
                "reward_model_path": str(sft.output),
            },
        )
    )
    assert outcome.status != 0
    assert "is the output of sft_lora, not a reward model" in outcome.lines[-1]
