"""GRPO from prompts, rewarded by a rule or a reward model (TRL GRPOTrainer)."""

from __future__ import annotations

from trainer.algorithms import common
from trainer.context import RunContext, TrainResult
from trainer.progress import ProgressTracker
from trainer.rewards import build_rewards


def train_grpo(ctx: RunContext) -> TrainResult:
    from trl import GRPOConfig, GRPOTrainer

    p = ctx.params
    per_step = p["batch_size"] * p["gradient_accumulation_steps"] * ctx.dist.world_size
    if per_step % p["num_generations"]:
        raise ValueError(
            f"batch_size x gradient_accumulation_steps x workers ({per_step}) must be a multiple "
            f"of num_generations ({p['num_generations']}): each prompt's group shares a step"
        )
    reward_funcs, reward_tokenizers = build_rewards(p)
    train, evals = common.load_datasets(ctx, ("prompts",))
    tokenizer = common.load_tokenizer(ctx.spec.base_model)
    kwargs = common.training_kwargs(ctx, evals)
    # GRPO's loss is not a quality measure, so there is no "best" checkpoint by loss:
    # the last policy is kept, and evaluation reports the mean reward on each set.
    kwargs.update(
        save_strategy="no",
        load_best_model_at_end=False,
        metric_for_best_model=None,
        greater_is_better=None,
        # GRPO batches carry no input_ids for transformers to count.
        include_num_input_tokens_seen="no",
    )
    config = GRPOConfig(
        **kwargs,
        num_generations=p["num_generations"],
        num_generations_eval=p["num_generations"],
        max_completion_length=p["max_completion_length"],
        temperature=p["temperature"],
        beta=p["beta"],
    )
    tracker = ProgressTracker(ctx.reporter, report=ctx.dist.is_main)
    adapter = p["use_lora"]
    model, peft_config = common.model_and_lora(ctx, adapter=adapter)
    callbacks = [
        cb
        for cb in common.callbacks(ctx, tracker, evals)
        if type(cb).__name__ != "EarlyStoppingCallback"
    ]
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=train,
        eval_dataset=evals or None,
        processing_class=tokenizer,
        reward_processing_classes=reward_tokenizers,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    return common.train_and_save(
        ctx, trainer, tracker, tokenizer, adapter=adapter, merge=adapter and p["save_merged"]
    )
