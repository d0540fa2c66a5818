"""The create form's 训练参数: 基础参数 first, 高级参数 folded, and presets (参数预设)
fitted to the algorithm and the base model's size, applied only when chosen."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from finetune.models import PretrainedModel
from finetune.storage import resolve
from tests.finetune import pages_support as support
from tests.trainer.test_trainer_memory import QWEN2_7B

pytestmark = pytest.mark.django_db
CREATE = "finetune:job_create"


def _value(page: str, name: str) -> str:
    found = re.search(rf'<input[^>]*name="param-{name}"[^>]*>', page)
    assert found, name
    return re.search(r'value="([^"]*)"', found.group(0)).group(1)


def _refresh(client, post, trigger):
    headers = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TRIGGER_NAME": trigger}
    return client.post(reverse(CREATE), {**post, "_refresh": "1"}, **headers).content.decode()


def test_basic_parameters_come_first_and_the_advanced_ones_fold(client, alice, ready):
    client.force_login(alice)
    page = client.get(reverse(CREATE)).content.decode()
    advanced = page.split('data-testid="advanced-parameters"')[1].split("</details>")[0]
    assert 'name="param-learning_rate"' not in advanced
    assert 'name="param-warmup_ratio"' in advanced and 'name="param-seed"' in advanced
    assert re.search(r'data-testid="advanced-parameters"\s*>', page), "folded by default"


def test_an_advanced_value_other_than_its_default_unfolds_them(client, alice, ready):
    dataset, repo, spec = ready
    client.force_login(alice)
    post = support.job_post(dataset, repo, spec, **{"param-seed": "7"})
    page = _refresh(client, post, "train_dataset")
    assert re.search(r'data-testid="advanced-parameters"\s+open', page)


def test_choosing_a_preset_fills_its_values_and_keeps_the_others(client, alice, ready):
    dataset, repo, spec = ready
    client.force_login(alice)
    post = support.job_post(dataset, repo, spec, _preset="quick")
    post["param-max_length"] = "300"  # not the preset's business: kept

    page = _refresh(client, post, "_preset")

    assert _value(page, "max_steps") == "20" and _value(page, "logging_steps") == "1"
    assert _value(page, "max_length") == "300"
    assert 'data-testid="preset-applied"' in page
    # a later refresh by another field does not apply the preset again
    post["param-max_steps"] = "5"
    again = _refresh(client, post, "validation_dataset")
    assert _value(again, "max_steps") == "5" and 'data-testid="preset-applied"' not in again


def test_a_preset_follows_the_base_models_size(client, alice, ready):
    folder = resolve("models/qwen2-7b")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(QWEN2_7B))
    model = PretrainedModel.objects.create(
        name="qwen2-7b", task_type="llm", family="qwen", location="models/qwen2-7b"
    )
    dataset, repo, spec = ready
    client.force_login(alice)
    post = support.job_post(dataset, repo, spec, algorithm_code="sft_full", _preset="recommended")
    post["pretrained_model"] = str(model.pk)

    page = _refresh(client, post, "_preset")

    assert float(_value(page, "learning_rate")) == 1e-5
    assert _value(page, "batch_size") == "2" and _value(page, "gradient_accumulation_steps") == "8"


def test_an_unknown_preset_changes_nothing(client, alice, ready):
    dataset, repo, spec = ready
    client.force_login(alice)
    post = support.job_post(dataset, repo, spec, _preset="<script>")
    post["param-max_steps"] = "9"
    page = _refresh(client, post, "_preset")
    assert _value(page, "max_steps") == "9" and "<script>" not in page


def test_presets_read_in_chinese(client, alice, ready):
    client.force_login(alice)
    client.cookies["django_language"] = "zh-hans"
    page = client.get(reverse(CREATE)).content.decode()
    assert "参数预设" in page and "快速试跑" in page and "高级参数" in page


def test_the_create_page_folds_the_preview_and_asks_only_while_unfolded(client, alice, ready):
    client.force_login(alice)
    page = client.get(reverse(CREATE)).content.decode()
    fold = page.split(' id="launch-preview"')[1].split(">")[0]
    assert "data-while-open" in fold and reverse("finetune:job_launch_preview") in fold


def test_the_run_configuration_is_previewed_once_the_form_is_complete(client, alice, ready):
    dataset, repo, spec = ready
    client.force_login(alice)
    post = support.job_post(dataset, repo, spec, **{"param-learning_rate": "0.0003"})

    page = client.post(reverse("finetune:job_launch_preview"), post).content.decode()

    command = page.split('data-testid="launch-command">')[1].split("</pre>")[0]
    assert command == "python -m trainer run --spec spec.json"
    config = json.loads(
        page.split('data-testid="launch-config">')[1].split("</pre>")[0].replace("&quot;", '"')
    )
    assert config["algorithm"] == "sft_lora" and config["parameters"]["learning_rate"] == 0.0003
    assert config["train_data"].endswith(dataset.location) and config["job_id"] == "…"
    assert config["report"]["token"] == "…" and config["output_dir"].endswith("/job-…")

    post["name"] = ""  # incomplete: no preview yet
    page = client.post(reverse("finetune:job_launch_preview"), post).content.decode()
    assert 'data-testid="launch-command"' not in page and "once the form is complete" in page


def test_a_run_of_several_processes_previews_its_launcher(client, alice, ready):
    dataset, repo, _spec = ready
    from scheduler.models import NodeSpec

    four = NodeSpec.objects.create(
        name="cpu-4p", cpu_millis=4000, memory_mib=8192, device_type="none", cpu_processes=4
    )
    support.node("node-b")
    client.force_login(alice)
    post = support.job_post(dataset, repo, four, node_count="2")
    page = client.post(reverse("finetune:job_launch_preview"), post).content.decode()
    command = page.split('data-testid="launch-command">')[1].split("</pre>")[0]
    assert "-m torch.distributed.run --nnodes=2 --node-rank=$NODE_RANK" in command
    assert "--nproc-per-node=4" in command and command.endswith("--spec spec.json")
