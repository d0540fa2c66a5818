"""Merge a trained LoRA into its base and export the result as a model of its own.

    python -m trainer export --source <version folder> --base <base model> --output <folder>

For a language model the adapter is folded into the base weights and saved as a full
model in safetensors, with the tokenizer: it loads with plain ``transformers``, no PEFT.
For text-to-image the LoRA is fused into the base pipeline's UNet and the pipeline saved
as diffusers lays it out, and the LoRA alone is written as one safetensors file in the
layout the common image tools load (kohya's ``lora_unet_...`` keys).

The output is staged and renamed into place like a training run's (trainer/output.py),
with a manifest that lists every file and its SHA-256. Progress goes to stdout as one
JSON object per line (``{"progress": 0.4, "stage": "merging"}``), read by the platform's
worker (finetune/services/exports.py); the last line says the outcome.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer.output import MANIFEST, OutputError, StagedOutput

EXIT_BAD_INPUT = 2
KOHYA_FILE = "lora.safetensors"

Say = Callable[[float, str], None]


class ExportError(ValueError):
    """Why a version cannot be exported: said to the user as it is."""


def read_manifest(source: Path) -> dict[str, Any]:
    try:
        found = json.loads((source / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"no readable manifest in {source}") from exc
    if not isinstance(found, dict):
        raise ExportError(f"no readable manifest in {source}")
    return found


def adapter_of(source: Path, manifest: dict[str, Any]) -> Path:
    """The version's LoRA adapter folder; an error for a version that has none."""
    name = (manifest.get("artifacts") or {}).get("adapter")
    if not name:
        raise ExportError("this version is a full model, not a LoRA adapter: nothing to merge")
    folder = source / name
    if not folder.is_dir():
        raise ExportError(f"the adapter folder {name}/ of this version is missing")
    return folder


def merge_llm(source: Path, base: Path, staging: Path, say: Say) -> dict[str, str]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    manifest = read_manifest(source)
    adapter = adapter_of(source, manifest)
    say(0.05, "loading the base model")
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype="auto")
    say(0.45, "loading the adapter")
    with torch.no_grad():
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    say(0.6, "saving the merged model")
    merged.save_pretrained(str(staging / "model"), safe_serialization=True)
    tokenizer_dir = source / (manifest.get("artifacts") or {}).get("tokenizer", adapter.name)
    AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(str(staging / "model"))
    return {"model": "model", "tokenizer": "model"}


def merge_t2i(source: Path, base: Path, staging: Path, say: Say) -> dict[str, str]:
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_all_state_dict_to_peft, convert_state_dict_to_kohya
    from safetensors.torch import load_file, save_file

    manifest = read_manifest(source)
    adapter = adapter_of(source, manifest)
    weights = sorted(adapter.glob("*.safetensors"))
    if not weights:
        raise ExportError(f"the adapter folder {adapter.name}/ holds no safetensors file")
    say(0.05, "loading the base pipeline")
    pipeline = StableDiffusionPipeline.from_pretrained(
        str(base), safety_checker=None, requires_safety_checker=False
    )
    say(0.4, "fusing the LoRA")
    pipeline.load_lora_weights(str(adapter))
    pipeline.fuse_lora()
    pipeline.unload_lora_weights()
    say(0.6, "saving the pipeline")
    pipeline.save_pretrained(str(staging / "pipeline"), safe_serialization=True)
    say(0.9, "writing the LoRA for image tools")
    (staging / "lora").mkdir()
    kohya = convert_state_dict_to_kohya(convert_all_state_dict_to_peft(load_file(weights[0])))
    save_file(kohya, str(staging / "lora" / KOHYA_FILE), metadata={"format": "pt"})
    return {"pipeline": "pipeline", "lora": f"lora/{KOHYA_FILE}"}


MERGERS = {"llm": merge_llm, "t2i": merge_t2i}


def export(source: Path, base: Path, output: Path, say: Say) -> Path:
    """Merge the version in ``source`` into ``base``; the final folder."""
    manifest = read_manifest(source)
    kind = manifest.get("model_kind")
    merger = MERGERS.get(kind)
    if merger is None:
        raise ExportError(f"models of kind {kind!r} cannot be merged")
    if not base.is_dir():
        raise ExportError(f"the base model {base} is missing: it was moved or deleted")
    staged = StagedOutput(output)
    try:
        staging = staged.prepare()
        artifacts = merger(source, base, staging, say)
        say(0.95, "writing the checksums")
        final = staged.finish(
            {
                "kind": "merged",
                "model_kind": kind,
                "scenario": manifest.get("scenario"),
                "algorithm": manifest.get("algorithm"),
                "base_model": str(base),
                "derived_from": str(source),
                "artifacts": artifacts,
                "metrics": manifest.get("metrics") or {},
            }
        )
    finally:
        staged.discard()
    say(1.0, "done")
    return final


def main(source: str, base: str, output: str) -> int:
    def say(progress: float, stage: str) -> None:
        print(json.dumps({"progress": progress, "stage": stage}), flush=True)

    try:
        final = export(Path(source), Path(base), Path(output), say)
    except (ExportError, OutputError) as exc:
        print(json.dumps({"error": str(exc), "bad_input": True}), flush=True)
        return EXIT_BAD_INPUT
    except Exception as exc:  # the worker shows it; the traceback goes to stderr
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps({"done": str(final)}), flush=True)
    return 0
