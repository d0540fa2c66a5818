"""Evaluate a trained version on a data set of its scenario, beside its base model.

    python -m trainer evaluate --source <version folder> --base <base model>
        --data <data set> --scenario <code> --output <folder> [--rows N]

What is measured follows what the data holds:

- text (pre-training), chat messages, alpaca instructions: the mean loss per token of the
  version and of the base model over the rows, and its perplexity; a few sample answers
  (greedy) of both next to the data set's own answer;
- preference pairs: how often the chosen answer wins -- by the reward model's score for a
  reward model, by the log-likelihood the model gives it over the rejected one otherwise
  (DPO's implicit reward), for the version and the base model;
- prompts: sample answers of both;
- captioned images (text-to-image): a grid of images from the first captions, with and
  without the LoRA, each seed shown.

The figures go to ``<output>/results.json`` (and the images beside it), written last and
in one rename like every other output; progress goes to stdout as JSON lines, as the
merge's does (trainer/export.py).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer.datavalidation import FORMATS, data_files, detect_format
from trainer.jsonl import read_rows
from trainer.output import StagedOutput, write_json
from trainer.playground import Generation, Loaded, base_model_alone, folder_bytes, load

RESULTS = "results.json"
SAMPLES = 3
IMAGES = 4
EXIT_BAD_INPUT = 2

Say = Callable[[float, str], None]


class EvaluationError(ValueError):
    """Why a version cannot be evaluated on this data: said to the user as it is."""


def rows_of(data: Path, scenario: str, limit: int) -> list[tuple[str, dict]]:
    """(format, row) of the first well-formed rows of the data set."""
    formats = tuple(FORMATS) if scenario != "t2i/finetune" else ("t2i",)
    found = []
    for _file, _line, row, error in read_rows(data_files(data, scenario)):
        if error is not None or not isinstance(row, dict):
            continue
        fmt = detect_format(formats, row)
        if all(name in row for name in FORMATS[fmt]):
            found.append((fmt, row))
        if len(found) >= limit:
            break
    if not found:
        raise EvaluationError(f"the data set at {data} has no well-formed row")
    return found


def _conversation(fmt: str, row: dict) -> tuple[list[dict], str] | None:
    """(the messages up to the answer, the answer) of a row that has one."""
    if fmt == "sft_messages":
        messages = row["messages"]
        if messages and messages[-1].get("role") == "assistant":
            return messages[:-1], messages[-1].get("content", "")
        return None
    if fmt == "sft_alpaca":
        question = "\n".join(x for x in (row.get("instruction"), row.get("input")) if x)
        return [{"role": "user", "content": question}], row.get("output", "")
    if fmt == "preference":
        return [{"role": "user", "content": row["prompt"]}], row["chosen"]
    if fmt == "prompts":
        return [{"role": "user", "content": row["prompt"]}], row.get("answer", "")
    return None


def _text(tokenizer: Any, fmt: str, row: dict) -> str:
    if fmt == "pretrain":
        return row["text"]
    talk = _conversation(fmt, row)
    assert talk is not None
    messages = [*talk[0], {"role": "assistant", "content": talk[1]}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def _sides(loaded: Loaded, base: Loaded | None):
    """(name, model, whether the adapter is on) of the version and of its base."""
    from contextlib import nullcontext

    yield "version", loaded.model, nullcontext()
    if loaded.has_adapter:
        yield "base", loaded.model, loaded.model.disable_adapter()
    elif base is not None:
        yield "base", base.model, nullcontext()


def _nll(model: Any, tokenizer: Any, text: str, max_tokens: int = 512) -> tuple[float, int]:
    """(sum of the negative log-likelihood, tokens) of ``text`` under ``model``."""
    import torch

    ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_tokens)
    ids = {k: v.to(model.device) for k, v in ids.items()}
    count = int(ids["input_ids"].shape[1]) - 1
    if count < 1:
        return 0.0, 0
    with torch.no_grad():
        loss = model(**ids, labels=ids["input_ids"]).loss
    return float(loss) * count, count


def _answer_nll(model: Any, tokenizer: Any, messages: list[dict], answer: str) -> float:
    """The log-likelihood the model gives ``answer`` after ``messages``."""
    import torch

    from trainer.playground import render_prompt

    prompt = render_prompt(tokenizer, messages)
    start = len(tokenizer(prompt)["input_ids"])
    ids = tokenizer(prompt + answer, return_tensors="pt")["input_ids"].to(model.device)
    with torch.no_grad():
        logits = model(ids).logits[0, :-1].float()
    picked = torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None])[:, 0]
    return float(picked[max(start - 1, 0) :].sum())


def evaluate_llm(
    loaded: Loaded, base: Loaded | None, rows: list[tuple[str, dict]], say: Say
) -> dict[str, Any]:
    from trainer.playground import stream_chat

    tokenizer = loaded.tokenizer
    results: dict[str, Any] = {"kind": "llm", "rows": len(rows), "sides": {}}
    pairs = [(f, r) for f, r in rows if f == "preference"]
    texts = [(f, r) for f, r in rows if f in ("pretrain", "sft_messages", "sft_alpaca")]
    sides = list(_sides(loaded, base))
    for number, (side, model, switch) in enumerate(sides):
        figures: dict[str, Any] = {}
        with switch:
            if texts:
                total, count = 0.0, 0
                for fmt, row in texts:
                    nll, tokens = _nll(model, tokenizer, _text(tokenizer, fmt, row))
                    total, count = total + nll, count + tokens
                loss = total / max(count, 1)
                figures.update(loss=loss, perplexity=math.exp(min(loss, 50)), tokens=count)
            if pairs:
                wins = 0
                for _fmt, row in pairs:
                    asked = [{"role": "user", "content": row["prompt"]}]
                    chosen = _answer_nll(model, tokenizer, asked, row["chosen"])
                    wins += chosen > _answer_nll(model, tokenizer, asked, row["rejected"])
                figures.update(preference_accuracy=wins / len(pairs), pairs=len(pairs))
        results["sides"][side] = figures
        say(0.1 + 0.5 * (number + 1) / len(sides), f"measured {side}")
    samples = []
    settings = Generation(max_new_tokens=64, temperature=0.0)
    for fmt, row in rows:
        talk = _conversation(fmt, row)
        if talk is None:
            continue
        messages, reference = talk
        sample = {"prompt": messages[-1]["content"], "reference": reference}
        for side, _model, _switch in sides:
            used = base if (side == "base" and not loaded.has_adapter) else loaded
            sample[side] = "".join(
                stream_chat(used, messages, settings, adapter=side == "version")
            ).strip()
        samples.append(sample)
        if len(samples) >= SAMPLES:
            break
    results["samples"] = samples
    return results


def evaluate_reward_model(source: Path, manifest: dict, rows: list[tuple[str, dict]]) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = source / (manifest.get("artifacts") or {}).get("model", "model")
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    pairs = [r for f, r in rows if f == "preference"]
    if not pairs:
        raise EvaluationError("a reward model is evaluated on preference pairs")

    def score(prompt: str, answer: str) -> float:
        ids = tokenizer(prompt + answer, return_tensors="pt", truncation=True, max_length=512)
        with torch.no_grad():
            return float(model(**ids).logits[0, 0])

    margins = [score(r["prompt"], r["chosen"]) - score(r["prompt"], r["rejected"]) for r in pairs]
    return {
        "kind": "reward_model",
        "rows": len(pairs),
        "sides": {
            "version": {
                "reward_accuracy": sum(m > 0 for m in margins) / len(margins),
                "mean_margin": sum(margins) / len(margins),
                "pairs": len(pairs),
            }
        },
        "samples": [
            {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"], "margin": m}
            for r, m in list(zip(pairs, margins, strict=True))[:SAMPLES]
        ],
    }


def evaluate_t2i(loaded: Loaded, base: Loaded | None, rows, staging: Path, say: Say) -> dict:
    from trainer.playground import images

    captions = [r["text"] for f, r in rows if f == "t2i"][:IMAGES]
    pipeline = loaded.model
    size = (pipeline.unet.config.sample_size or 64) * getattr(pipeline, "vae_scale_factor", 8)
    grid = []
    for number, caption in enumerate(captions):
        entry = {"prompt": caption, "seed": number}
        for side in ("version", "base"):
            used = base if (side == "base" and not loaded.has_adapter) else loaded
            if used is None:
                continue
            png = images(
                used, caption, Generation(seed=number), 20, size, adapter=side == "version"
            )
            name = f"sample-{number}-{side}.png"
            (staging / name).write_bytes(png)
            entry[side] = name
        grid.append(entry)
        say(0.1 + 0.8 * (number + 1) / len(captions), f"drew {number + 1} of {len(captions)}")
    return {"kind": "t2i", "rows": len(captions), "images": grid}


def evaluate(
    source: Path, base: Path, data: Path, scenario: str, output: Path, limit: int, say: Say
) -> Path:
    manifest = json.loads((source / "manifest.json").read_text(encoding="utf-8"))
    rows = rows_of(data, scenario, limit)
    say(0.05, "loading the model")
    staged = StagedOutput(output)
    try:
        staging = staged.prepare()
        if manifest.get("algorithm") == "reward_model":
            results = evaluate_reward_model(source, manifest, rows)
        else:
            if not base.is_dir():
                raise EvaluationError(f"the base model {base} is missing")
            size = folder_bytes(base) + folder_bytes(source)
            loaded = load(source, base, manifest, size)
            other = None if loaded.has_adapter else base_model_alone(base, loaded.kind, 0)
            if loaded.kind == "t2i":
                results = evaluate_t2i(loaded, other, rows, staging, say)
            else:
                results = evaluate_llm(loaded, other, rows, say)
        results["data_rows_read"] = len(rows)
        write_json(staging / RESULTS, results)
        final = staged.finish({"kind": "evaluation", "artifacts": {"results": RESULTS}})
    finally:
        staged.discard()
    say(1.0, "done")
    return final


def main(source: str, base: str, data: str, scenario: str, output: str, limit: int) -> int:
    def say(progress: float, stage: str) -> None:
        print(json.dumps({"progress": progress, "stage": stage}), flush=True)

    try:
        final = evaluate(Path(source), Path(base), Path(data), scenario, Path(output), limit, say)
    except (EvaluationError, OSError, ValueError) as exc:
        print(json.dumps({"error": str(exc), "bad_input": True}), flush=True)
        return EXIT_BAD_INPUT
    except Exception as exc:
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps({"done": str(final)}), flush=True)
    return 0
