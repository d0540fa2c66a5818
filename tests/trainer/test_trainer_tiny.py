import hashlib
import json

import pytest

from trainer.datavalidation import validate
from trainer.output import OutputError, StagedOutput
from trainer.samples import KINDS, write_sample_dataset
from trainer.tiny import build_tiny_llm


def folder_bytes(path):
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_the_tiny_llm_is_a_few_megabytes_and_chats(tmp_path, tiny_llm):
    # How long it takes to build is measured, not asserted: a loaded machine is slow.
    path = build_tiny_llm(tmp_path / "llm")
    assert folder_bytes(path) < 5 * 2**20
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    assert "<|im_start|>assistant" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert AutoModelForCausalLM.from_pretrained(path).config.hidden_size == 64


def test_the_tiny_t2i_pipeline_is_small_and_renders(tiny_t2i):
    from diffusers import StableDiffusionPipeline

    assert folder_bytes(tiny_t2i) < 10 * 2**20
    pipeline = StableDiffusionPipeline.from_pretrained(tiny_t2i)
    pipeline.set_progress_bar_config(disable=True)
    image = pipeline("a red square", num_inference_steps=2, height=32, width=32).images[0]
    assert image.size == (32, 32)


@pytest.mark.parametrize("kind", KINDS)
def test_sample_data_sets_pass_validation(tmp_path, kind):
    scenario = {
        "pretrain": "llm/pretrain",
        "sft_messages": "llm/sft",
        "sft_alpaca": "llm/sft",
        "preference": "llm/reward_model",
        "prompts": "llm/rl",
        "t2i": "t2i/finetune",
    }[kind]
    dest = write_sample_dataset(kind, tmp_path / kind, rows=7)
    report = validate(scenario, str(dest))
    assert report.ok and report.valid_rows == 7


def test_staged_output_appears_only_complete(tmp_path):
    staged = StagedOutput(tmp_path / "out")
    staging = staged.prepare()
    (staging / "model").mkdir()
    (staging / "model" / "weights.bin").write_bytes(b"x" * 10)
    assert not (tmp_path / "out").exists()
    final = staged.finish({"job_id": 1})
    manifest = json.loads((final / "manifest.json").read_text())
    digest = hashlib.sha256(b"x" * 10).hexdigest()
    assert manifest["files"] == [{"path": "model/weights.bin", "bytes": 10, "sha256": digest}]
    assert not staging.exists() and not (final / "_checkpoints").exists()


def test_staged_output_accepts_an_empty_prepared_folder_but_not_a_full_one(tmp_path):
    (tmp_path / "empty").mkdir()
    StagedOutput(tmp_path / "empty").prepare()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(OutputError, match="not empty"):
        StagedOutput(tmp_path / "full").prepare()


def test_discarding_removes_the_staging_folder(tmp_path):
    staged = StagedOutput(tmp_path / "out")
    staging = staged.prepare()
    staged.discard()
    assert not staging.exists() and not (tmp_path / "out").exists()
