# ruff: noqa: RUF001 - Chinese text uses full-width punctuation on purpose
"""Issue 13, item 3: the create page estimates the memory a job needs per device, beside
the queue prediction, and a job that cannot fit is refused with what would make it fit."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import translation

from finetune.models import Job, PretrainedModel
from scheduler.models import DeviceType, NodeSpec
from tests.finetune import pages_support as support

pytestmark = pytest.mark.django_db
CREATE = "finetune:job_create"


def _post(ready, model, spec, algorithm="sft_full", **params):
    dataset, repo, _spec = ready
    post = support.job_post(dataset, repo, spec, algorithm_code=algorithm)
    post["pretrained_model"] = str(model.pk)
    post.update({f"param-{name}": str(value) for name, value in params.items()})
    return post


def test_the_prediction_shows_the_estimate_per_device_and_what_auto_shards_to(
    client, alice, ready, qwen7b, h100
):
    client.force_login(alice)
    page = client.post(
        reverse("finetune:job_prediction"), _post(ready, qwen7b, h100, max_length=2048)
    ).content.decode()
    assert 'data-testid="memory-estimate"' in page
    assert "GiB of 80 GiB per device (ZeRO-2)" in page  # auto: the least that fits
    assert "memory-fits" in page

    with translation.override("zh-hans"):
        client.cookies["django_language"] = "zh-hans"
        chinese = client.post(
            reverse("finetune:job_prediction"),
            _post(ready, qwen7b, h100, max_length=2048, sharding="zero3"),
            HTTP_ACCEPT_LANGUAGE="zh-hans",
        ).content.decode()
    assert "显存估算" in chinese and "GiB / 80 GiB（每设备，ZeRO-3）" in chinese


def test_a_job_that_cannot_fit_is_refused_with_what_would_fit(client, alice, ready, qwen7b, h100):
    client.force_login(alice)
    one = NodeSpec.objects.create(
        name="h100-x1",
        cpu_millis=8000,
        memory_mib=65536,
        device_type=DeviceType.GPU,
        device_count=1,
        device_memory_gib=80,
    )
    response = client.post(reverse(CREATE), _post(ready, qwen7b, one, max_length=2048))

    page = response.content.decode()
    assert response.status_code == 400 and not Job.objects.exists()
    assert "It does not fit on “h100-x1”" in page
    assert "GiB of 80 GiB per device" in page
    assert "It would fit with: a LoRA algorithm" in page
    # LoRA on the same device: created
    response = client.post(reverse(CREATE), _post(ready, qwen7b, one, algorithm="sft_lora"))
    assert response.status_code == 302 and Job.objects.count() == 1


def test_a_cpu_spec_is_checked_against_each_processs_share_of_its_memory(
    client, alice, ready, qwen7b
):
    small = NodeSpec.objects.create(
        name="cpu-2p",
        cpu_millis=2000,
        memory_mib=8192,
        device_type=DeviceType.NONE,
        cpu_processes=2,
    )
    client.force_login(alice)
    page = client.post(reverse("finetune:job_prediction"), _post(ready, qwen7b, small)).content
    assert "GiB of 4 GiB per process" in page.decode()
    assert "memory-too-much" in page.decode()


def test_the_sharding_choice_is_offered_in_the_pages_language(client, alice, ready):
    client.force_login(alice)
    client.cookies["django_language"] = "zh-hans"
    tiny = PretrainedModel.objects.get(name="tiny-llama")
    with translation.override("zh-hans"):  # the language the page activates goes after
        page = client.post(
            reverse(CREATE), {**_post(ready, tiny, ready[2]), "_refresh": "1"}
        ).content.decode()
    assert 'name="param-sharding"' in page
    assert "ZeRO-3：同时切分权重" in page and "自动：按显存估算选择" in page


def test_fsdp2_is_refused_on_a_cpu_spec_where_it_would_not_shard(client, alice, ready, qwen7b):
    """accelerate applies FSDP to accelerator processes only: on CPUs it trains unsharded."""
    two = NodeSpec.objects.create(
        name="cpu-two",
        cpu_millis=2000,
        memory_mib=65536,
        device_type=DeviceType.NONE,
        cpu_processes=2,
    )
    from scheduler.models import Node

    Node.objects.create(
        name="cpu-node", cpu_millis=8000, memory_mib=131072, device_type=DeviceType.NONE
    )
    client.force_login(alice)
    post = _post(ready, PretrainedModel.objects.get(name="tiny-llama"), two, sharding="fsdp2")
    page = client.post(reverse(CREATE), post).content.decode()
    assert "FSDP2 shards only on accelerators" in page and not Job.objects.exists()
