import subprocess
import sys

import jsonschema
import pytest

from trainer.catalog import ALGORITHMS, SCENARIOS, get_algorithm
from trainer.spec import SpecError, resolve_parameters


def test_catalog_and_data_validation_import_without_heavy_libraries(repo_root):
    code = (
        "import sys, trainer.catalog, trainer.datavalidation\n"
        "heavy = [m for m in ('torch', 'transformers', 'jsonschema', 'trl') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_it_lists_the_five_scenarios_with_chinese_names():
    names = {s.code: s.name_zh for s in SCENARIOS}
    assert names == {
        "llm/pretrain": "预训练",
        "llm/sft": "大语言模型微调",
        "llm/reward_model": "奖励模型",
        "llm/rl": "强化学习",
        "t2i/finetune": "文生图模型微调",
    }
    assert {s.task_type for s in SCENARIOS} == {"llm", "t2i"}


def test_every_required_algorithm_belongs_to_a_known_scenario():
    codes = {a.code for a in ALGORITHMS}
    assert {"pretrain", "sft_lora", "sft_full", "reward_model", "dpo", "grpo", "t2i_lora"} <= codes
    scenarios = {s.code: s.task_type for s in SCENARIOS}
    for algorithm in ALGORITHMS:
        assert scenarios[algorithm.scenario] == algorithm.model_kind
        assert algorithm.name_zh and algorithm.description_zh


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=lambda a: a.code)
def test_every_parameter_is_described_in_both_languages_with_a_valid_default(algorithm):
    schema = algorithm.parameters_schema
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    for name, prop in schema["properties"].items():
        for key in ("title", "title_zh", "description", "description_zh"):
            assert prop.get(key), f"{algorithm.code}.{name} lacks {key}"
        assert "default" in prop, f"{algorithm.code}.{name} has no default"
        if prop["type"] in ("integer", "number"):
            assert "minimum" in prop or "exclusiveMinimum" in prop, f"{name} has no lower bound"
    defaults = {name: prop["default"] for name, prop in schema["properties"].items()}
    jsonschema.validate(defaults, schema)


def test_it_fills_defaults_and_keeps_given_values():
    resolved = resolve_parameters(get_algorithm("sft_lora"), {"lora_rank": 32})
    assert resolved["lora_rank"] == 32
    assert resolved["learning_rate"] == 2e-4


def test_it_refuses_out_of_range_and_unknown_parameters_naming_them():
    with pytest.raises(SpecError, match="lora_rank"):
        resolve_parameters(get_algorithm("sft_lora"), {"lora_rank": 0})
    with pytest.raises(SpecError, match="colour"):
        resolve_parameters(get_algorithm("dpo"), {"colour": "blue"})


def test_it_names_the_known_algorithms_for_an_unknown_code():
    with pytest.raises(KeyError, match="sft_lora"):
        get_algorithm("nope")
