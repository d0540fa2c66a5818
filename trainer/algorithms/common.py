"""What the LLM algorithms share: data sets, training arguments, callbacks, LoRA, saving."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from trainer import memory, sharding
from trainer.context import RunContext, TrainResult
from trainer.datavalidation import FORMATS, data_files, detect_format
from trainer.devices import supports_bf16
from trainer.jsonl import read_rows
from trainer.progress import ProgressTracker
from trainer.spec import SpecError

log = logging.getLogger("jingtiao.train")

VALIDATION, TEST = "validation", "test"


# Data -------------------------------------------------------------------------------


def read_jsonl(path: str, scenario: str) -> list[dict]:
    """Rows of an already validated data set (the runner validated it first)."""
    return [row for _, _, row, _ in read_rows(data_files(path, scenario))]


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _alpaca_prompt(row: dict) -> str:
    return row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")


def to_records(rows: list[dict], fmts: tuple[str, ...]) -> list[dict]:
    """Rows in the conversational shapes TRL expects, so chat templates apply everywhere."""
    kinds = {detect_format(fmts, row) for row in rows}
    records = []
    for row in rows:
        fmt = detect_format(fmts, row)
        if fmt == "pretrain":
            records.append({"text": row["text"]})
        elif fmt == "sft_messages":
            records.append({"messages": row["messages"]})
        elif fmt == "sft_alpaca" and kinds == {"sft_alpaca"}:
            # Prompt-completion: TRL then learns from the output only.
            records.append(
                {"prompt": _user(_alpaca_prompt(row)), "completion": _assistant(row["output"])}
            )
        elif fmt == "sft_alpaca":  # mixed with chat rows: one column layout for all
            records.append({"messages": _user(_alpaca_prompt(row)) + _assistant(row["output"])})
        elif fmt == "preference":
            records.append(
                {
                    "prompt": _user(row["prompt"]),
                    "chosen": _assistant(row["chosen"]),
                    "rejected": _assistant(row["rejected"]),
                }
            )
        elif fmt == "prompts":
            records.append({"prompt": _user(row["prompt"]), "answer": row.get("answer") or ""})
        else:
            raise ValueError(f"format {fmt} is not an LLM format ({', '.join(FORMATS)})")
    return records


def load_datasets(ctx: RunContext, fmts: tuple[str, ...]) -> tuple[Any, dict[str, Any]]:
    """The training set and the evaluation sets keyed "validation" / "test"."""
    from datasets import Dataset

    spec = ctx.spec

    def load(path: str) -> Any:
        return Dataset.from_list(to_records(read_jsonl(path, spec.scenario), fmts))

    evals = {}
    if spec.validation_data:
        evals[VALIDATION] = load(spec.validation_data)
    if spec.test_data:
        evals[TEST] = load(spec.test_data)
    return load(spec.train_data), evals


# Training arguments -------------------------------------------------------------------


def precision_flags(ctx: RunContext) -> dict[str, bool]:
    choice = ctx.params.get("precision", "auto")
    if choice == "auto":
        choice = "bf16" if supports_bf16(ctx.device) else "fp32"
    return {"bf16": choice == "bf16", "fp16": choice == "fp16"}


def training_kwargs(
    ctx: RunContext, evals: dict[str, Any], *, metric: str = "loss", greater_is_better: bool = False
) -> dict[str, Any]:
    """TrainingArguments fields from the resolved parameters (shared by every TRL config)."""
    p = ctx.params
    has_validation = VALIDATION in evals
    strategy = p["eval_strategy"] if evals else "no"
    kwargs: dict[str, Any] = {
        "output_dir": str(ctx.checkpoints),
        "num_train_epochs": p["epochs"],
        "max_steps": p["max_steps"] or -1,
        "learning_rate": p["learning_rate"],
        "lr_scheduler_type": p["lr_scheduler"],
        "warmup_steps": p["warmup_ratio"],  # below 1 transformers reads it as a ratio
        "weight_decay": p["weight_decay"],
        "per_device_train_batch_size": p["batch_size"],
        "per_device_eval_batch_size": p["batch_size"],
        "gradient_accumulation_steps": p["gradient_accumulation_steps"],
        "max_grad_norm": p["max_grad_norm"],
        "seed": p["seed"],
        # On by default, as in TRL and LLaMA-Factory: activations are what run a device out of
        # memory. Reentrant, as LLaMA-Factory has it: a recomputed layer's activations live
        # only while that layer's backward runs, which peaks lower than non-reentrant
        # checkpointing at the same speed (docs/trainer.md, "Memory").
        "activation_checkpointing": p["gradient_checkpointing"],
        # Under DDP (any torchrun launch, the platform's too) reentrant checkpointing marks
        # a recomputed layer's parameters ready twice and fails: non-reentrant there.
        "activation_checkpointing_kwargs": {"use_reentrant": not _wrapped_in_ddp(ctx)},
        "logging_steps": p["logging_steps"],
        "logging_first_step": True,
        "eval_strategy": strategy,
        "eval_steps": p["eval_steps"],
        # Checkpoints give back the best one, so they follow evaluation; every save_steps
        # steps one more is saved to resume from (ResumableCallback), the last two kept
        # (and the best).
        "save_strategy": strategy if has_validation else "no",
        "save_steps": p["eval_steps"],
        "save_total_limit": 2 if resumable(ctx) else 1,
        # A checkpoint to resume from holds the optimiser's and the schedule's state, and a
        # sharded run keeps its optimiser state with each checkpoint anyway: transformers
        # loads the best one back only from a whole checkpoint then.
        "save_only_model": not (sharded(ctx) or resumable(ctx)),
        "load_best_model_at_end": has_validation,
        "metric_for_best_model": f"eval_{VALIDATION}_{metric}" if has_validation else None,
        "greater_is_better": greater_is_better if has_validation else None,
        "report_to": "none",
        "disable_tqdm": True,
        "include_num_input_tokens_seen": "non_padding",
        "dataloader_num_workers": 0,
        "use_cpu": ctx.device.kind == "cpu",
        **precision_flags(ctx),
    }
    if ctx.dist.is_distributed:
        kwargs["ddp_backend"] = ctx.device.backend
    if _wrapped_in_ddp(ctx) and not sharded(ctx):
        # Every trained parameter takes part in every step: no search for unused ones.
        kwargs["ddp_find_unused_parameters"] = False
    kwargs.update(
        sharding.training_arguments(
            sharding_of(ctx),
            world_size=ctx.dist.world_size,
            device_kind=ctx.device.kind,
            backend=ctx.device.backend,
            folder=ctx.checkpoints,
            base_model=ctx.spec.base_model,
            checkpointing=p["gradient_checkpointing"],
            is_main=ctx.dist.is_main,
        )
    )
    return kwargs


def sharding_of(ctx: RunContext) -> str:
    """The job's sharding, `auto` decided by the memory estimate; one process: ddp."""
    chosen = ctx.params.get("sharding", "ddp")
    if ctx.dist.world_size == 1:
        return "ddp"
    if chosen == "auto":
        if ctx.resolved_sharding is None:
            ctx.resolved_sharding = _auto_sharding(ctx)
            log.info("sharding auto: %s", ctx.resolved_sharding)
        return ctx.resolved_sharding
    return chosen


def workload(ctx: RunContext) -> memory.Workload:
    """What this run asks of each device, for the memory estimate; ShapeError where the
    base model is not a language model the estimate knows."""
    return memory.workload(
        ctx.spec,
        world_size=ctx.dist.world_size,
        processes_per_node=int(os.environ.get("LOCAL_WORLD_SIZE") or 1),
        device_kind=ctx.device.kind,
    )


def _auto_sharding(ctx: RunContext) -> str:
    try:
        work = workload(ctx)
    except memory.ShapeError as exc:
        log.info("sharding auto: no memory estimate (%s), so ddp", exc)
        return "ddp"
    return memory.choose_sharding(
        work,
        capacity=memory.device_capacity(ctx.device.kind, ctx.dist),
        available=sharding.available(ctx.device.kind),
    )


def sharded(ctx: RunContext) -> bool:
    return sharding_of(ctx) != "ddp"


def _wrapped_in_ddp(ctx: RunContext) -> bool:
    """transformers wraps the model in DDP whenever a launcher set LOCAL_RANK, even for
    one process (torchrun does; the executors start a job of one process without it)."""
    return ctx.dist.is_distributed or "LOCAL_RANK" in os.environ


class ReportingCallback(TrainerCallback):
    """Forwards every log event (loss, evaluation, learning rate) to the tracker."""

    def __init__(self, tracker: ProgressTracker) -> None:
        self.tracker = tracker

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step:  # resumed: the checkpoint's step and tokens are loaded
            self.tracker.started_from(state.global_step, getattr(state, "num_input_tokens_seen", 0))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            self.tracker.log(
                step=state.global_step,
                max_steps=state.max_steps,
                epoch=state.epoch,
                values=logs,
                tokens_seen=getattr(state, "num_input_tokens_seen", None),
            )


class PeakMemoryCallback(TrainerCallback):
    """This process's memory peak over the training loop, the model loaded and sharded:
    what the memory estimate predicts (loading and saving happen on the host)."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def on_train_begin(self, args, state, control, **kwargs):
        memory.reset_peak(self.ctx.device.kind, self.ctx.dist.local_rank)

    def on_step_end(self, args, state, control, **kwargs):
        # Every rank says it got through its first step (only rank 0 logs the others):
        # a rank that hangs in its first collective shows as the one missing.
        if state.global_step == 1 and self.ctx.dist.is_distributed:
            log.info("first step done on rank %d of %d", self.ctx.dist.rank, args.world_size)

    def on_train_end(self, args, state, control, **kwargs):
        self.ctx.training_peak = memory.measured_peak(
            self.ctx.device.kind, self.ctx.dist.local_rank
        )


def resumable(ctx: RunContext) -> bool:
    """Whether the run saves checkpoints to resume from (save_steps above 0)."""
    return bool(ctx.params.get("save_steps"))


class ResumableCallback(TrainerCallback):
    """Ask for a whole checkpoint every ``save_steps`` steps, whatever evaluation does:
    transformers then saves the weights, the optimiser, the schedule, the random state
    and the step, which is all ``train(resume_from_checkpoint=...)`` needs to go on."""

    def __init__(self, every: int) -> None:
        self.every = every

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            control.should_save = True
        return control


def callbacks(ctx: RunContext, tracker: ProgressTracker, evals: dict[str, Any]) -> list[Any]:
    from transformers import EarlyStoppingCallback

    result: list[Any] = [ReportingCallback(tracker), PeakMemoryCallback(ctx)]
    if resumable(ctx):
        result.append(ResumableCallback(int(ctx.params["save_steps"])))
    patience = ctx.params.get("early_stopping_patience", 0)
    if patience and VALIDATION in evals:
        result.append(EarlyStoppingCallback(early_stopping_patience=patience))
    return result + list(ctx.extra_callbacks)


def quiet_printer(trainer: Any) -> None:
    """Our callback logs each event once; drop transformers' own printer."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


# Models -----------------------------------------------------------------------------


def lora_config(params: dict[str, Any], task_type: str) -> Any:
    from peft import LoraConfig

    targets = params["lora_target_modules"].strip()
    return LoraConfig(
        r=params["lora_rank"],
        lora_alpha=params["lora_alpha"],
        lora_dropout=params["lora_dropout"],
        target_modules=targets
        if targets == "all-linear"
        else [name.strip() for name in targets.split(",") if name.strip()],
        task_type=task_type,
    )


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_dtype(ctx: RunContext) -> Any:
    import torch

    flags = precision_flags(ctx)
    # Mixed precision keeps fp32 master weights; only an explicit choice loads 16-bit.
    if ctx.params.get("precision") == "bf16" and flags["bf16"]:
        return torch.bfloat16
    return torch.float32


def load_causal_lm(ctx: RunContext) -> Any:
    """The model training starts from: the base model, or the full model version the
    job goes on from (``start_from``)."""
    from transformers import AutoModelForCausalLM

    full, _adapter = starting_version(ctx)
    where = str(full) if full is not None else ctx.spec.base_model
    return AutoModelForCausalLM.from_pretrained(where, dtype=model_dtype(ctx))


def starting_version(ctx: RunContext) -> tuple[Path | None, Path | None]:
    """(full model folder, adapter folder) of the version named by ``start_from``, the
    other None; both None for a fresh start from the base model."""
    named = ctx.params.get("start_from")
    if not named:
        return None, None
    folder = Path(named)
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SpecError(f"start_from {named} holds no trained model (no manifest.json)") from None
    artifacts = manifest.get("artifacts") or {}
    if manifest.get("model_kind") != "llm":
        raise SpecError(f"start_from {named} is not a language model")
    if artifacts.get("adapter"):
        return None, folder / artifacts["adapter"]
    full = artifacts.get("model") or artifacts.get("merged")
    if not full:
        raise SpecError(f"start_from {named} holds neither a model nor an adapter")
    return folder / full, None


def model_and_lora(ctx: RunContext, *, adapter: bool) -> tuple[Any, Any]:
    """(model, peft_config) to give a TRL trainer. From a LoRA version, a LoRA run trains
    that adapter further (its own rank and targets) and a full run trains the base with it
    merged in; from a full version, the run trains on that model (a LoRA then applies to
    it, which the manifest says: ``adapter_base``)."""
    model = load_causal_lm(ctx)
    full, trained = starting_version(ctx)
    if trained is not None:
        from peft import PeftModel

        log.info("starting from the adapter %s", trained)
        model = PeftModel.from_pretrained(model, str(trained), is_trainable=adapter)
        if not adapter:
            model = model.merge_and_unload()
        return model, None
    if full is not None:
        log.info("starting from the model %s", full)
        if adapter:
            ctx.adapter_base = str(full)
    return model, lora_config(ctx.params, "CAUSAL_LM") if adapter else None


# Finishing ----------------------------------------------------------------------------


def train_and_save(
    ctx: RunContext,
    trainer: Any,
    tracker: ProgressTracker,
    tokenizer: Any,
    *,
    adapter: bool,
    merge: bool = False,
) -> TrainResult:
    """Train, evaluate the kept model once more, and save it into the staging folder."""
    quiet_printer(trainer)
    resume = ctx.spec.resume_from
    if resume:
        log.info("resuming from %s", resume)
    outcome = trainer.train(resume_from_checkpoint=resume or None)
    final: dict[str, Any] = {}
    if trainer.eval_dataset:
        final = trainer.evaluate()
    # Every rank takes part in saving a sharded model (the weights are gathered to rank 0,
    # which alone writes); the other ranks' artifacts are not published.
    artifacts = save_model(ctx, trainer, tokenizer, adapter=adapter, merge=merge)
    return TrainResult(
        artifacts=artifacts,
        metrics=summarize(trainer, outcome, final),
        history=tracker.history,
        base_model=ctx.adapter_base,
    )


def save_model(
    ctx: RunContext, trainer: Any, tokenizer: Any, *, adapter: bool, merge: bool
) -> dict[str, str]:
    role = "adapter" if adapter else "model"
    target = ctx.staging / role
    if sharded(ctx) or ctx.dist.is_main:
        trainer.save_model(str(target))
    if not ctx.dist.is_main:
        return {}
    tokenizer.save_pretrained(str(target))
    artifacts = {role: role, "tokenizer": role}
    if adapter and merge:
        merged = _merged(ctx, trainer, target)
        merged.save_pretrained(str(ctx.staging / "merged"))
        tokenizer.save_pretrained(str(ctx.staging / "merged"))
        artifacts["merged"] = "merged"
    return artifacts


def _merged(ctx: RunContext, trainer: Any, adapter: Path) -> Any:
    """The base model with the adapter folded in. A sharded run holds only its shard of
    the base weights, so the merge starts from the saved adapter on the host instead."""
    if not sharded(ctx):
        return trainer.model.merge_and_unload()
    from peft import PeftModel

    base = load_causal_lm(ctx)
    return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()


def summarize(trainer: Any, outcome: Any, final: dict[str, Any]) -> dict[str, Any]:
    state = trainer.state
    losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
    summary: dict[str, Any] = {
        "steps": state.global_step,
        "epochs": state.epoch,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "train_runtime_seconds": outcome.metrics.get("train_runtime"),
        "tokens_seen": getattr(state, "num_input_tokens_seen", None),
        "best_validation_metric": state.best_metric,
        "best_checkpoint_step": _checkpoint_step(state.best_model_checkpoint),
    }
    runtime = summary["train_runtime_seconds"]
    if summary["tokens_seen"] and runtime:
        summary["tokens_per_second"] = round(summary["tokens_seen"] / runtime, 2)
    for key, value in final.items():
        if key.startswith(f"eval_{VALIDATION}_") or key.startswith(f"eval_{TEST}_"):
            summary[key.removeprefix("eval_")] = value
    return summary


def _checkpoint_step(path: str | None) -> int | None:
    if not path:
        return None
    name = Path(path).name
    return int(name.rsplit("-", 1)[1]) if name.startswith("checkpoint-") else None
