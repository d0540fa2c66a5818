"""Learning from preference pairs: a reward model (TRL RewardTrainer) and DPO (DPOTrainer)."""

from __future__ import annotations

from trainer.algorithms import common
from trainer.context import RunContext, TrainResult
from trainer.progress import ProgressTracker


def train_reward_model(ctx: RunContext) -> TrainResult:
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    p = ctx.params
    train, evals = common.load_datasets(ctx, ("preference",))
    tokenizer = common.load_tokenizer(ctx.spec.base_model)
    # A fresh one-logit head on the base model: its output is the scalar reward.
    model = AutoModelForSequenceClassification.from_pretrained(
        ctx.spec.base_model, num_labels=1, dtype=common.model_dtype(ctx)
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    config = RewardConfig(**common.training_kwargs(ctx, evals), max_length=p["max_length"])
    tracker = ProgressTracker(ctx.reporter, report=ctx.dist.is_main)
    trainer = RewardTrainer(
        model=model,
        args=config,
        train_dataset=train,
        eval_dataset=evals or None,
        processing_class=tokenizer,
        callbacks=common.callbacks(ctx, tracker, evals),
    )
    return common.train_and_save(ctx, trainer, tracker, tokenizer, adapter=False)


def train_dpo(ctx: RunContext) -> TrainResult:
    from trl import DPOConfig, DPOTrainer

    p = ctx.params
    train, evals = common.load_datasets(ctx, ("preference",))
    tokenizer = common.load_tokenizer(ctx.spec.base_model)
    config = DPOConfig(
        **common.training_kwargs(ctx, evals),
        max_length=p["max_length"],
        beta=p["beta"],
        loss_type=[p["loss_type"]],
    )
    tracker = ProgressTracker(ctx.reporter, report=ctx.dist.is_main)
    adapter = p["use_lora"]
    model, peft_config = common.model_and_lora(ctx, adapter=adapter)
    trainer = DPOTrainer(
        model=model,
        # With LoRA the reference is the base model with the adapter switched off,
        # so no second copy of the weights is loaded.
        ref_model=None,
        args=config,
        train_dataset=train,
        eval_dataset=evals or None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=common.callbacks(ctx, tracker, evals),
    )
    return common.train_and_save(
        ctx, trainer, tracker, tokenizer, adapter=adapter, merge=adapter and p["save_merged"]
    )
