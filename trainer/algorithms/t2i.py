"""Text-to-image LoRA: a LoRA adapter on the UNet of a Stable-Diffusion-style pipeline.

The loop follows diffusers' own ``train_text_to_image_lora.py`` (noise-prediction MSE
on VAE latents), with accelerate for devices and processes. Validation and test loss
use fixed noise and timesteps, so evaluations compare with each other.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from trainer.context import RunContext, TrainResult
from trainer.datavalidation import data_files
from trainer.jsonl import read_rows
from trainer.output import write_json
from trainer.progress import ProgressTracker
from trainer.spec import SpecError

log = logging.getLogger("jingtiao.train")
VALIDATION, TEST = "validation", "test"


def _image_tensor(file: Path, resolution: int) -> Any:
    """Resize the short side, centre-crop to a square, scale to [-1, 1], channels first."""
    import numpy as np
    import torch
    from PIL import Image

    with Image.open(file) as image:
        image = image.convert("RGB")
        scale = resolution / min(image.size)
        size = (
            max(resolution, round(image.width * scale)),
            max(resolution, round(image.height * scale)),
        )
        image = image.resize(size, Image.Resampling.BICUBIC)
        left, top = (image.width - resolution) // 2, (image.height - resolution) // 2
        image = image.crop((left, top, left + resolution, top + resolution))
        array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class CaptionedImages:
    """Map-style dataset of (pixel_values, input_ids) from a folder with metadata.jsonl."""

    def __init__(
        self, path: str, scenario: str, tokenizer: Any, resolution: int, flip: bool = False
    ) -> None:
        self.items = [
            (file.parent / row["file_name"], row["text"])
            for file, _, row, _ in read_rows(data_files(path, scenario))
        ]
        self.tokenizer, self.resolution, self.flip = tokenizer, resolution, flip

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        file, caption = self.items[index]
        pixels = _image_tensor(file, self.resolution)
        if self.flip and torch.rand(()) < 0.5:
            pixels = pixels.flip(-1)
        ids = self.tokenizer(
            caption,
            padding="max_length",
            truncation=True,
            max_length=self.tokenizer.model_max_length,
            return_tensors="pt",
        ).input_ids[0]
        return {"pixel_values": pixels, "input_ids": ids}


class Diffusion:
    """The frozen pipeline parts and the LoRA-wrapped UNet, with the loss of one batch."""

    def __init__(self, ctx: RunContext) -> None:
        import torch
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from peft import LoraConfig
        from transformers import AutoTokenizer, CLIPTextModel

        p, base = ctx.params, ctx.spec.base_model
        self.tokenizer = AutoTokenizer.from_pretrained(base, subfolder="tokenizer")
        self.text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder")
        self.vae = AutoencoderKL.from_pretrained(base, subfolder="vae")
        self.unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
        self.noise_scheduler = DDPMScheduler.from_pretrained(base, subfolder="scheduler")
        for module in (self.text_encoder, self.vae, self.unet):
            module.requires_grad_(False)
        targets = [name.strip() for name in p["lora_target_modules"].split(",") if name.strip()]
        self.unet.add_adapter(
            LoraConfig(
                r=p["lora_rank"],
                lora_alpha=p["lora_alpha"],
                lora_dropout=p["lora_dropout"],
                init_lora_weights="gaussian",
                target_modules=targets,
            )
        )
        self.trainable = [param for param in self.unet.parameters() if param.requires_grad]
        self.torch = torch

    def to(self, device: Any) -> None:
        for module in (self.text_encoder, self.vae, self.unet):
            module.to(device)

    def resolution(self, asked: int) -> int:
        """The image size to train and sample at: the one asked for, else (0) the one the
        base model was made for -- its U-Net's latent sample size times the VAE's
        down-scaling (512 for Stable Diffusion 1.5, 1024 for SDXL, 32 for the tiny one)."""
        if asked:
            return asked
        scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return int(self.unet.config.sample_size) * scale

    def loss(self, unet: Any, batch: dict[str, Any], generator: Any = None) -> Any:
        torch = self.torch
        pixels = batch["pixel_values"]
        with torch.no_grad():
            latents = self.vae.encode(pixels).latent_dist.sample(generator)
            latents = latents * self.vae.config.scaling_factor
            hidden = self.text_encoder(batch["input_ids"], return_dict=False)[0]
        noise = torch.randn(latents.shape, generator=generator, device=latents.device)
        steps = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(
            0, steps, (latents.shape[0],), generator=generator, device=latents.device
        ).long()
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        prediction = unet(noisy, timesteps, hidden, return_dict=False)[0]
        return torch.nn.functional.mse_loss(prediction.float(), target.float())


#: Denoising steps of a sample image (during training and at its end).
SAMPLE_STEPS = 25
#: Where the samples lie in the job's output: step-000010.png during training and
#: sample.png from the saved adapter at its end (the platform lists this folder).
SAMPLES = "samples"


def sample_name(step: int) -> str:
    return f"step-{step:06d}.png"


def _sample(ctx: RunContext, diffusion: Diffusion, unet: Any, step: int) -> None:
    """The validation prompt drawn by the adapter as it is at `step`, always from the
    same seed, so that the images of a run show what it learnt (保存到 samples/)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    p, torch = ctx.params, diffusion.torch
    pipeline = StableDiffusionPipeline(
        vae=diffusion.vae,
        text_encoder=diffusion.text_encoder,
        tokenizer=diffusion.tokenizer,
        unet=unet,
        scheduler=DDIMScheduler.from_config(diffusion.noise_scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    size = diffusion.resolution(p["resolution"])
    unet.eval()
    with torch.no_grad():
        image = pipeline(
            p["validation_prompt"],
            num_inference_steps=SAMPLE_STEPS,
            generator=torch.Generator(device="cpu").manual_seed(p["seed"]),
            height=size,
            width=size,
        ).images[0]
    unet.train()
    folder = ctx.staging / SAMPLES
    folder.mkdir(exist_ok=True)
    # written whole, then renamed: the platform never shows half an image
    partial = folder / f".{sample_name(step)}.partial"
    image.save(partial, format="PNG")
    partial.replace(folder / sample_name(step))


def _evaluate(diffusion: Diffusion, unet: Any, loader: Any, seed: int) -> float:
    torch = diffusion.torch
    generator = torch.Generator(device="cpu").manual_seed(seed)
    unet.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            total += float(diffusion.loss(unet, batch, generator)) * len(batch["input_ids"])
            count += len(batch["input_ids"])
    unet.train()
    return total / max(count, 1)


def train_t2i_lora(ctx: RunContext) -> TrainResult:
    import torch
    from accelerate import Accelerator
    from diffusers.optimization import get_scheduler
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict

    p, spec = ctx.params, ctx.spec
    precision = {"auto": "no", "fp32": "no"}.get(p["precision"], p["precision"])
    accelerator = Accelerator(
        gradient_accumulation_steps=p["gradient_accumulation_steps"],
        mixed_precision=precision,
        cpu=ctx.device.kind == "cpu",
    )
    torch.manual_seed(p["seed"])
    diffusion = Diffusion(ctx)
    diffusion.to(accelerator.device)
    resolution = diffusion.resolution(p["resolution"])

    def loader(path: str, shuffle: bool) -> Any:
        data = CaptionedImages(
            path,
            spec.scenario,
            diffusion.tokenizer,
            resolution,
            flip=shuffle and p["random_flip"],
        )
        return torch.utils.data.DataLoader(
            data, batch_size=p["batch_size"], shuffle=shuffle, generator=order
        )

    # each epoch's order is drawn from (seed, epoch) alone, so that a resumed run reads
    # the rest of its epoch in the order it would have
    order = torch.Generator()
    train_loader = loader(spec.train_data, True)
    evals = {
        name: loader(path, False)
        for name, path in ((VALIDATION, spec.validation_data), (TEST, spec.test_data))
        if path
    }
    # an epoch is what one process reads of the data: its share once prepared
    train_loader = accelerator.prepare(train_loader)
    steps_per_epoch = math.ceil(len(train_loader) / p["gradient_accumulation_steps"])
    max_steps = p["max_steps"] or steps_per_epoch * p["epochs"]
    optimizer = torch.optim.AdamW(
        diffusion.trainable, lr=p["learning_rate"], weight_decay=p["weight_decay"]
    )
    scheduler = get_scheduler(
        p["lr_scheduler"],
        optimizer=optimizer,
        num_warmup_steps=math.ceil(p["warmup_ratio"] * max_steps),
        num_training_steps=max_steps,
    )
    unet, optimizer, scheduler = accelerator.prepare(diffusion.unet, optimizer, scheduler)
    evals = {name: accelerator.prepare(data) for name, data in evals.items()}

    tracker = ProgressTracker(ctx.reporter, report=accelerator.is_main_process)
    best: dict[str, Any] = {"loss": math.inf, "step": None, "state": None, "values": {}}
    last: dict[str, Any] = {"step": None, "values": {}}
    step, stale, running, seen = 0, 0, [], 0
    resumed_rng = None
    if spec.resume_from:
        kept = _resume(spec.resume_from, accelerator.unwrap_model(unet), optimizer, scheduler)
        step, stale, seen = kept["step"], kept["stale"], kept["seen"]
        best.update(kept["best"])
        resumed_rng = torch.get_rng_state()
        tracker.started_from(step)
        log.info("resuming from %s at step %d", spec.resume_from, step)

    def evaluate() -> bool:
        """Evaluate every set, remember the best adapter; True when it is time to stop."""
        nonlocal stale
        values = {
            f"{name}_loss": _evaluate(diffusion, unet, data, p["seed"])
            for name, data in evals.items()
        }
        last.update(step=step, values=values)
        tracker.log(
            step=step,
            max_steps=max_steps,
            epoch=step / steps_per_epoch,
            values={f"eval_{key}": value for key, value in values.items()},
        )
        if VALIDATION not in evals:
            return False
        if values[f"{VALIDATION}_loss"] < best["loss"]:
            state = get_peft_model_state_dict(accelerator.unwrap_model(unet))
            best.update(
                loss=values[f"{VALIDATION}_loss"],
                step=step,
                values=values,
                state={k: v.detach().clone() for k, v in state.items()},
            )
            stale = 0
            return False
        stale += 1
        return bool(p["early_stopping_patience"]) and stale >= p["early_stopping_patience"]

    unet.train()
    stop = False
    while step < max_steps and not stop:
        order.manual_seed(p["seed"] + step // steps_per_epoch)
        batches = iter(train_loader)
        for _ in range((step % steps_per_epoch) * p["gradient_accumulation_steps"]):
            next(batches, None)  # read before the checkpoint this run resumed from
        if resumed_rng is not None:
            # reading them drew random flips: the noise goes on from the checkpoint's state
            torch.set_rng_state(resumed_rng)
            resumed_rng = None
        for batch in batches:
            with accelerator.accumulate(unet):
                loss = diffusion.loss(unet, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and p["max_grad_norm"]:
                    accelerator.clip_grad_norm_(diffusion.trainable, p["max_grad_norm"])
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            running.append(float(loss.detach()))
            seen += len(batch["input_ids"])
            if not accelerator.sync_gradients:
                continue
            step += 1
            if step % p["logging_steps"] == 0 or step == 1:
                tracker.log(
                    step=step,
                    max_steps=max_steps,
                    epoch=step / steps_per_epoch,
                    values={
                        "loss": sum(running) / len(running),
                        "learning_rate": scheduler.get_last_lr()[0],
                    },
                )
                running = []
            due = (p["eval_strategy"] == "steps" and step % p["eval_steps"] == 0) or (
                p["eval_strategy"] == "epoch" and step % steps_per_epoch == 0
            )
            if due and p["validation_prompt"] and accelerator.is_main_process:
                _sample(ctx, diffusion, accelerator.unwrap_model(unet), step)
            if evals and due and evaluate():
                log.info("early stopping at step %s: no better validation loss", step)
                stop = True
            if p["save_steps"] and step % p["save_steps"] == 0 and accelerator.is_main_process:
                kept = {"step": step, "stale": stale, "seen": seen, "best": best}
                _checkpoint(ctx, accelerator.unwrap_model(unet), optimizer, scheduler, kept)
            if step >= max_steps or stop:
                break
    if evals and last["step"] != step:
        evaluate()  # the final adapter competes for "best" too
    unet = accelerator.unwrap_model(unet)
    final = last["values"]
    if best["state"] is not None and best["step"] != step:
        log.info("keeping the best validation loss %.4g from step %s", best["loss"], best["step"])
        set_peft_model_state_dict(unet, best["state"])
        final = best["values"]
    artifacts = _save(ctx, diffusion, unet) if accelerator.is_main_process else {}
    losses = [r["loss"] for r in tracker.history if "loss" in r]
    metrics = {
        "steps": step,
        "epochs": step / steps_per_epoch,
        "images_seen": seen,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "best_validation_metric": best["loss"] if best["step"] is not None else None,
        "best_checkpoint_step": best["step"],
        **final,
    }
    return TrainResult(artifacts=artifacts, metrics=metrics, history=tracker.history)


KEEP_CHECKPOINTS = 2
STATE = "trainer_state.json"  # written last: a checkpoint without it was cut short


def _checkpoint(ctx: RunContext, unet: Any, optimizer: Any, scheduler: Any, kept: dict) -> None:
    """The whole training state at this step, to resume from (services/checkpoints.py):
    the adapter, the optimiser, the schedule, the random state, the best adapter so far;
    the last KEEP_CHECKPOINTS kept."""
    import shutil

    import torch
    from peft.utils import get_peft_model_state_dict

    folder = ctx.checkpoints / f"checkpoint-{kept['step']}"
    folder.mkdir(parents=True, exist_ok=True)
    best = kept["best"]
    torch.save(
        {
            "adapter": get_peft_model_state_dict(unet),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "best_state": best["state"],
        },
        folder / "state.pt",
    )
    summary = {key: best[key] for key in ("loss", "step", "values")}
    state = {"global_step": kept["step"], "stale": kept["stale"], "seen": kept["seen"]}
    write_json(folder / STATE, {**state, "best": summary})
    done = sorted(
        (p for p in ctx.checkpoints.glob("checkpoint-*") if (p / STATE).is_file()),
        key=lambda p: int(p.name.rsplit("-", 1)[1]),
    )
    for old in done[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)


def _resume(folder: str, unet: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Load a checkpoint of ``_checkpoint`` into the run; what the loop goes on with."""
    import json

    import torch
    from peft.utils import set_peft_model_state_dict

    path = Path(folder)
    try:
        state = json.loads((path / STATE).read_text(encoding="utf-8"))
        saved = torch.load(path / "state.pt", weights_only=False)
    except (OSError, ValueError) as exc:
        raise SpecError(f"resume_from {folder} is not a checkpoint of this algorithm") from exc
    set_peft_model_state_dict(unet, saved["adapter"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"])
    best = {**state["best"], "state": saved["best_state"]}  # its loss inf while none yet
    return {
        "step": state["global_step"],
        "stale": state["stale"],
        "seen": state["seen"],
        "best": best,
    }


def _save(ctx: RunContext, diffusion: Diffusion, unet: Any) -> dict[str, str]:
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    p = ctx.params
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(
        save_directory=str(ctx.staging / "adapter"),
        unet_lora_layers=layers,
        safe_serialization=True,
    )
    artifacts = {"adapter": "adapter", "base_pipeline": ctx.spec.base_model}
    if not (p["save_merged"] or p["validation_prompt"]):
        return artifacts
    pipeline = StableDiffusionPipeline.from_pretrained(
        ctx.spec.base_model, safety_checker=None, requires_safety_checker=False
    )
    pipeline.load_lora_weights(str(ctx.staging / "adapter"))
    if p["validation_prompt"]:
        generator = diffusion.torch.Generator(device="cpu").manual_seed(p["seed"])
        image = pipeline(
            p["validation_prompt"],
            num_inference_steps=SAMPLE_STEPS,
            generator=generator,
            height=diffusion.resolution(p["resolution"]),
            width=diffusion.resolution(p["resolution"]),
        ).images[0]
        (ctx.staging / SAMPLES).mkdir(exist_ok=True)
        image.save(ctx.staging / SAMPLES / "sample.png")
        artifacts["samples"] = SAMPLES
    if p["save_merged"]:
        pipeline.fuse_lora()
        pipeline.unload_lora_weights()
        pipeline.save_pretrained(str(ctx.staging / "pipeline"))
        artifacts["merged"] = "pipeline"
    return artifacts
