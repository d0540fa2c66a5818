"""Merge and export (trainer/export.py) on real tiny models: the merged language model
loads with plain transformers and computes what base + adapter compute; the fused
text-to-image pipeline loads in diffusers; the checksums of the manifest are true."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainer.conftest import version_folder
from trainer.export import ExportError, export
from trainer.output import MANIFEST

REPO = Path(__file__).resolve().parents[2]


def test_a_merged_llm_loads_with_transformers_alone_and_equals_base_plus_adapter(
    tiny_llm, llm_version, tmp_path
):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    steps = []
    final = export(llm_version, tiny_llm, tmp_path / "merged", lambda p, s: steps.append(p))
    assert steps[-1] == 1.0 and steps == sorted(steps)
    merged = AutoModelForCausalLM.from_pretrained(str(final / "model"))
    assert not any("lora" in name for name, _ in merged.named_parameters())
    tokenizer = AutoTokenizer.from_pretrained(str(final / "model"))
    ids = tokenizer("The quick brown fox jumps", return_tensors="pt").input_ids
    base = AutoModelForCausalLM.from_pretrained(str(tiny_llm))
    with torch.no_grad():
        plain = base(ids).logits
        adapted = PeftModel.from_pretrained(base, str(llm_version / "adapter"))(ids).logits
        exported = merged(ids).logits
    assert (adapted - plain).abs().max() > 1e-2  # the adapter changes the answer
    assert torch.allclose(exported, adapted, atol=1e-4)
    manifest = json.loads((final / MANIFEST).read_text())
    assert manifest["kind"] == "merged" and manifest["artifacts"]["model"] == "model"
    listed = {entry["path"]: entry for entry in manifest["files"]}
    assert "model/model.safetensors" in listed
    for name, entry in listed.items():
        data = (final / name).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()


def test_export_refuses_a_missing_base_or_a_full_model(llm_version, tiny_llm, tmp_path):
    with pytest.raises(ExportError, match=r"base model .* is missing"):
        export(llm_version, tmp_path / "gone", tmp_path / "out", lambda p, s: None)
    full = version_folder(tmp_path / "full", "llm", {"model": "model"})
    with pytest.raises(ExportError, match="full model"):
        export(full, tiny_llm, tmp_path / "out", lambda p, s: None)
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.partial").exists()


def test_the_command_line_reports_progress_and_refusals_as_json_lines(llm_version, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "trainer", "export", "--source", str(llm_version),
         "--base", str(tmp_path / "nowhere"), "--output", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert last["bad_input"] and "missing" in last["error"]


def test_a_fused_t2i_pipeline_loads_in_diffusers_and_its_lora_in_kohya_layout(
    tiny_t2i, t2i_version, tmp_path
):
    import torch
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    source = t2i_version
    final = export(source, tiny_t2i, tmp_path / "merged", lambda p, s: None)

    fused = StableDiffusionPipeline.from_pretrained(
        str(final / "pipeline"), safety_checker=None, requires_safety_checker=False
    )
    with_lora = StableDiffusionPipeline.from_pretrained(
        str(tiny_t2i), safety_checker=None, requires_safety_checker=False
    )
    with_lora.load_lora_weights(str(source / "adapter"))
    size = fused.unet.config.sample_size
    latents = torch.randn(1, fused.unet.config.in_channels, size, size)
    text = torch.randn(1, 4, fused.unet.config.cross_attention_dim)
    with torch.no_grad():
        a = fused.unet(latents, 10, encoder_hidden_states=text).sample
        b = with_lora.unet(latents, 10, encoder_hidden_states=text).sample
    assert torch.allclose(a, b, atol=1e-4)
    kohya = load_file(str(final / "lora" / "lora.safetensors"))
    assert kohya and all(key.startswith("lora_unet_") for key in kohya)
