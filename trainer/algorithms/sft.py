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
    model, peft_config = common.model_and_lora(ctx, adapter=adapter)
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=train,
        eval_dataset=evals or None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=common.callbacks(ctx, tracker, evals),
    )
    if packing and not _has_varlen_attention(model):
        trainer.data_collator = PackedRows(trainer.data_collator)
    return common.train_and_save(
        ctx,
        trainer,
        tracker,
        tokenizer,
        adapter=adapter,
        merge=adapter and p.get("save_merged", False),
    )


def _has_varlen_attention(model) -> bool:
    implementation = getattr(model.config, "_attn_implementation", "") or ""
    return implementation.startswith("flash_attention")


class PackedRows:
    """Keep the packed rows of a batch apart, for attention without varlen kernels.

    TRL's padding-free collator flattens a whole batch into one sequence, which
    flash attention's varlen kernels handle in linear memory; SDPA and eager
    attention (CPU, most MLU builds) would instead attend over the whole
    flattened batch, B² times the work and memory of separate rows. Here every
    packed row stays a row of `max_length`, with position ids restarting at each
    example and no attention mask, so transformers builds a block-diagonal
    causal mask per row: still no padding waste, and no attention across examples.
    """

    def __init__(self, collator) -> None:
        collator.padding_free = False
        collator.return_position_ids = True
        self.collator = collator

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.collator(examples)
        # A mask of ones would hide the example boundaries the position ids carry.
        batch.pop("attention_mask", None)
        return batch


def train_pretrain(ctx: RunContext) -> TrainResult:
    return _train(ctx, adapter=False, pretrain=True)


def train_sft_lora(ctx: RunContext) -> TrainResult:
    return _train(ctx, adapter=True, pretrain=False)


def train_sft_full(ctx: RunContext) -> TrainResult:
    return _train(ctx, adapter=False, pretrain=False)
