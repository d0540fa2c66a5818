"""Trying a trained model: a chat answer streamed piece by piece, or images from a prompt,
each beside what the base model does with the same input.

Models stay loaded between requests in a small cache of the process (``ModelCache``),
least recently used first out when a new one would take it past its memory budget: the
platform's inference worker keeps one, so a second question to the same version answers
at once. A LoRA version is loaded once, as its base with the adapter on top; its base
model's answer is the same weights with the adapter switched off, so comparing costs no
second copy.

Nothing here touches Django: the worker (finetune/services/playground.py) says what to
run and where the pieces go.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
VERSION = "version"
BASE = "base"


def folder_bytes(folder: Path) -> int:
    """What a model's weights take on disk: about what they take in memory."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES)


@dataclass
class Loaded:
    kind: str  # "llm" | "t2i"
    model: Any  # a causal LM, or a diffusers pipeline
    tokenizer: Any  # None for t2i
    has_adapter: bool
    size: int


class ModelCache:
    """Loaded models by key (a version's folder), least recently used first out by memory."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.entries: OrderedDict[str, Loaded] = OrderedDict()
        self.lock = threading.Lock()
        self.loads = 0

    def used(self) -> int:
        return sum(e.size for e in self.entries.values())

    def get(self, key: str, size: int, loader: Callable[[int], Loaded]) -> Loaded:
        """The model cached under ``key``, else ``loader(size)``'s, after making room."""
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
                return found
            while self.entries and self.used() + size > self.budget:
                self.entries.popitem(last=False)
            self.loads += 1
            loaded = loader(size)
            self.entries[key] = loaded
            return loaded


def load(source: Path, base: Path, manifest: dict[str, Any], size: int) -> Loaded:
    artifacts = manifest.get("artifacts") or {}
    kind = manifest.get("model_kind")
    if kind == "t2i":
        return _load_t2i(source, base, artifacts, size)
    if kind != "llm":
        raise ValueError(f"models of kind {kind!r} cannot be tried")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = artifacts.get("adapter")
    full = artifacts.get("model") or artifacts.get("merged")
    tokenizer_dir = source / artifacts.get("tokenizer", adapter or full or "")
    if adapter:
        from peft import PeftModel

        model = AutoModelForCausalLM.from_pretrained(str(base), dtype="auto")
        model = PeftModel.from_pretrained(model, str(source / adapter))
    else:
        model = AutoModelForCausalLM.from_pretrained(str(source / full), dtype="auto")
    model.eval()  # gradients stay as they were: each generation runs under no_grad
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    return Loaded("llm", model, tokenizer, bool(adapter), size)


def _load_t2i(source: Path, base: Path, artifacts: dict[str, Any], size: int) -> Loaded:
    from diffusers import StableDiffusionPipeline

    adapter = artifacts.get("adapter")
    folder = base if adapter else source / artifacts.get("pipeline", "pipeline")
    pipeline = StableDiffusionPipeline.from_pretrained(
        str(folder), safety_checker=None, requires_safety_checker=False
    )
    if adapter:
        pipeline.load_lora_weights(str(source / adapter), adapter_name="trained")
    pipeline.set_progress_bar_config(disable=True)
    return Loaded("t2i", pipeline, None, bool(adapter), size)


def base_model_alone(base: Path, kind: str, size: int) -> Loaded:
    """The base model itself, for a full (merged) version's comparison."""
    return load(
        base, base, {"model_kind": kind, "artifacts": {"model": ".", "pipeline": "."}}, size
    )


def render_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The conversation as the model was trained to read it: the tokenizer's chat template
    (saved from the base model with the version), else the turns as plain lines."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join([*lines, "assistant:"])


@dataclass(frozen=True)
class Generation:
    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0
    max_seconds: float = 60.0


def stream_chat(
    loaded: Loaded, messages: list[dict[str, str]], settings: Generation, *, adapter: bool = True
) -> Iterator[str]:
    """The answer to ``messages``, piece by piece as it is generated; with ``adapter``
    False, the base model's answer (the adapter switched off meanwhile)."""
    import torch
    from transformers import TextIteratorStreamer

    tokenizer, model = loaded.tokenizer, loaded.model
    inputs = tokenizer(render_prompt(tokenizer, messages), return_tensors="pt")
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    sample = settings.temperature > 0
    arguments = {
        **inputs,
        "max_new_tokens": settings.max_new_tokens,
        "do_sample": sample,
        "streamer": streamer,
        "max_time": settings.max_seconds,
        "pad_token_id": tokenizer.pad_token_id or tokenizer.eos_token_id,
    }
    if sample:
        arguments.update(temperature=settings.temperature, top_p=settings.top_p)
    off = model.disable_adapter() if loaded.has_adapter and not adapter else nullcontext()
    failure: list[BaseException] = []

    def generate() -> None:
        torch.manual_seed(settings.seed)
        try:
            with torch.no_grad():
                model.generate(**arguments)
        except BaseException as exc:  # shown by the reader, once the stream ends
            failure.append(exc)
            streamer.end()

    with off:
        worker = threading.Thread(target=generate, daemon=True)
        worker.start()
        yield from (piece for piece in streamer if piece)
        worker.join()
    if failure:
        raise failure[0]


def images(
    loaded: Loaded, prompt: str, settings: Generation, steps: int, size: int, *, adapter: bool
) -> bytes:
    """One PNG from ``prompt`` with ``seed``; with ``adapter`` False, without the LoRA."""
    import io

    import torch

    pipeline = loaded.model
    if loaded.has_adapter:
        if adapter:
            pipeline.enable_lora()
        else:
            pipeline.disable_lora()
    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    image = pipeline(
        prompt, num_inference_steps=steps, generator=generator, height=size, width=size
    ).images[0]
    if loaded.has_adapter:
        pipeline.enable_lora()
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def throttled(write: Callable[[str], None], every: float = 0.03) -> Callable[[str, bool], None]:
    """``write(text)`` at most every ``every`` seconds, and always for the last call."""
    last = [0.0]

    def put(text: str, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - last[0] >= every:
            last[0] = now
            write(text)

    return put
