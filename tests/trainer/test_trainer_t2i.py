"""Text-to-image LoRA trains on CPU, its loss falls, and the adapter renders an image."""

import torch
from diffusers import StableDiffusionPipeline
from PIL import Image


def test_t2i_lora_lowers_its_loss_and_the_adapter_renders(make_spec, train, tiny_t2i, data):
    spec = make_spec(
        algorithm="t2i_lora",
        scenario="t2i/finetune",
        base_model=tiny_t2i,
        train=data["t2i"],
        validation=data["t2i_val"],
        test=data["t2i_val"],
        parameters={
            "max_steps": 30,
            "learning_rate": 1e-2,
            "batch_size": 4,
            "resolution": 0,  # the base model's own: 16 latent pixels x 2 = 32
            "logging_steps": 1,
            "eval_strategy": "steps",
            "eval_steps": 10,
            "validation_prompt": "a red square",
            "save_merged": True,
        },
    )
    outcome = train(spec)
    assert outcome.status == 0, outcome.lines[-20:]
    evals = outcome.series("eval_loss")
    assert len(evals) == 3 and evals[-1] < evals[0]  # fixed noise: comparable evaluations
    assert outcome.fell("loss", by=0.05)
    assert len(outcome.series("test_loss")) == 3
    manifest = outcome.manifest
    assert manifest["artifacts"]["adapter"] == "adapter"
    assert manifest["metrics"]["validation_loss"] == min(evals)
    sample = Image.open(outcome.output / "samples" / "sample.png")
    assert sample.size == (32, 32)
    # one sample at every evaluation point, from the adapter as it was then, all from
    # the same seed: the images differ as the adapter learns
    during = sorted((outcome.output / "samples").glob("step-*.png"))
    assert [path.name for path in during] == [f"step-{n:06d}.png" for n in (10, 20, 30)]
    first, last = (Image.open(path).convert("RGB") for path in (during[0], during[-1]))
    assert first.size == (32, 32) and first.tobytes() != last.tobytes()
    assert not list((outcome.output / "samples").glob(".*"))  # no half-written image

    pipeline = StableDiffusionPipeline.from_pretrained(
        tiny_t2i, safety_checker=None, requires_safety_checker=False
    )
    pipeline.load_lora_weights(str(outcome.output / "adapter"))
    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(0)
    image = pipeline(
        "a blue circle", num_inference_steps=2, height=32, width=32, generator=generator
    ).images[0]
    assert image.size == (32, 32)
    merged = StableDiffusionPipeline.from_pretrained(outcome.output / "pipeline")
    merged.set_progress_bar_config(disable=True)
    image = merged("a blue circle", num_inference_steps=2, height=32, width=32).images[0]
    assert image.size == (32, 32)
