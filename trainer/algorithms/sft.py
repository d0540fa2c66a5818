"""Continued pre-training and supervised fine-tuning (LoRA or full), through TRL's SFTTrainer."""

from __future__ import annotations

from trainer.algorithms import common
from trainer.context import RunContext, TrainResult
from trainer.progress import ProgressTracker


def _train(ctx: RunContext, *, adapter: bool, pretrain: bool) -> TrainResult:
    from trl import SFTConfig, SFTTrainer

    p = ctx.params
    train, evals = common.load_datasets(ctx, ctx.spec.info.data_formats)
    tokenizer = common.load_tokenizer(ctx.spec.base_model)
    packing = True if pretrain else p["packing"]
    config = SFTConfig(
        **common.training_kwargs(ctx, evals),
        max_length=p["max_length"],
        packing=packing,
        # Best-fit packing with per-sequence position ids: no padding, and no attention
        # across example boundaries. Pre-training splits long documents instead of
        # truncating them, so no text is thrown away.
        packing_strategy="bfd_split" if pretrain else "bfd",
        assistant_only_loss=bool(p.get("assistant_only_loss")) and not pretrain,
        dataset_num_proc=None,
    )
    tracker = ProgressTracker(ctx.reporter, report=ctx.dist.is_main)
    trainer = SFTTrainer(
        model=common.load_causal_lm(ctx),
        args=config,
        train_dataset=train,
        eval_dataset=evals or None,
        processing_class=tokenizer,
        peft_config=common.lora_config(p, "CAUSAL_LM") if adapter else None,
        callbacks=common.callbacks(ctx, tracker, evals),
    )
    return common.train_and_save(
        ctx,
        trainer,
        tracker,
        tokenizer,
        adapter=adapter,
        merge=adapter and p.get("save_merged", False),
    )


def train_pretrain(ctx: RunContext) -> TrainResult:
    return _train(ctx, adapter=False, pretrain=True)


def train_sft_lora(ctx: RunContext) -> TrainResult:
    return _train(ctx, adapter=True, pretrain=False)


def train_sft_full(ctx: RunContext) -> TrainResult:
    return _train(ctx, adapter=False, pretrain=False)
