"""预计运行时长: how long a draft would train, measured on jobs like it that ran here,
else from the compute it needs; and a warning when it would outlast its duration."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from finetune import runtime
from finetune.models import Algorithm, JobStatus, MetricPoint, PretrainedModel
from scheduler.models import DeviceType, NodeSpec
from tests import factories
from tests.finetune import pages_support as support

pytestmark = pytest.mark.django_db
PREDICT = "finetune:job_prediction"


def _ran(project, alice, spec, *, seconds_per_step, batch_size, start_up, save, code="sft_full"):
    """A succeeded job that reported 11 steps at `seconds_per_step`."""
    steps = 11
    algorithm = Algorithm.objects.get(code=code)
    model = PretrainedModel.objects.get(name="tiny-llama")
    started = timezone.now() - timedelta(hours=1)
    first = started + timedelta(seconds=start_up)
    last = first + timedelta(seconds=seconds_per_step * (steps - 1))
    job = factories.job(
        project,
        alice,
        status=JobStatus.SUCCEEDED,
        algorithm=algorithm,
        scenario=algorithm.scenario,
        pretrained_model=model,
        spec_in_use=spec,
        started_at=started,
        finished_at=last + timedelta(seconds=save),
        parameters={"batch_size": batch_size, "gradient_accumulation_steps": 1},
    )
    MetricPoint.objects.bulk_create(
        MetricPoint(
            job=job,
            worker="rank0",
            time=first + timedelta(seconds=seconds_per_step * n),
            step=n + 1,
            loss=1.0,
        )
        for n in range(steps)
    )
    return job


def _draft(ready, spec, **params):
    dataset, repo, _spec = ready
    post = support.job_post(dataset, repo, spec, algorithm_code="sft_full")
    post.update({f"param-{name}": str(value) for name, value in params.items()})
    return post


def test_the_run_time_is_measured_on_jobs_like_it(client, project, alice, ready):
    dataset, _repo, spec = ready
    # 2 s a step at 4 sequences a step: 0.5 s a sequence; 30 s before the first step
    # (one step of which was training), 10 s after the last
    _ran(project, alice, spec, seconds_per_step=2.0, batch_size=4, start_up=30, save=10)
    algorithm = Algorithm.objects.get(code="sft_full")
    model = PretrainedModel.objects.get(name="tiny-llama")

    found = runtime.for_specs(
        algorithm, model, {"batch_size": 8, "max_steps": 100}, dataset, [spec], 1
    )

    assert len(found) == 1 and found[0].basis == "history" and found[0].similar == 1
    assert found[0].steps == 100
    assert found[0].seconds == pytest.approx(100 * 8 * 0.5 + 28 + 10)


def test_the_steps_come_from_the_data_set_when_no_maximum_is_set(ready):
    dataset, _repo, _spec = ready
    algorithm = Algorithm.objects.get(code="reward_model")
    dataset.record_count = 100
    params = {"epochs": 2, "batch_size": 4, "gradient_accumulation_steps": 2, "max_steps": 0}
    assert runtime.planned_steps(algorithm, params, dataset, processes=1) == 2 * 13
    assert runtime.planned_steps(algorithm, params, dataset, processes=4) == 2 * 4


def test_packed_data_is_counted_in_sequences_of_its_maximum_length(ready):
    dataset, _repo, _spec = ready
    pretrain = Algorithm.objects.get(code="pretrain")
    dataset.size_bytes = 35_000_000  # ≈ 10 M tokens
    params = {"max_length": 1000, "epochs": 1, "batch_size": 10, "max_steps": 0}
    assert runtime.planned_steps(pretrain, params, dataset, processes=1) == 1000


def test_without_such_a_job_the_compute_it_needs_answers_on_a_known_device(
    client,
    alice,
    ready,
    qwen7b,
    h100,
):
    dataset, _repo, _spec = ready
    dataset.record_count, dataset.size_bytes = 1000, 1000 * 3500  # ≈ 1,000 tokens a row
    dataset.save()
    algorithm = Algorithm.objects.get(code="sft_full")
    params = {"max_steps": 10, "batch_size": 1, "gradient_accumulation_steps": 1}
    params |= {"max_length": 2048, "packing": False, "gradient_checkpointing": False}

    found = runtime.for_specs(algorithm, qwen7b, params, dataset, [h100], 1)

    assert found[0].basis == "compute"
    tokens = 10 * 1 * 8 * 1000  # steps x batch x processes x tokens a row
    expected = 6 * runtime.fit.model_shape(qwen7b.location).parameters * tokens
    assert found[0].seconds == pytest.approx(expected / (989e12 * runtime.MFU * 8))


def test_a_cpu_spec_with_no_such_job_gets_no_estimate(ready):
    dataset, _repo, _spec = ready
    cpu = NodeSpec.objects.create(
        name="cpu", cpu_millis=2000, memory_mib=4096, device_type=DeviceType.NONE
    )
    algorithm = Algorithm.objects.get(code="reward_model")
    model = PretrainedModel.objects.get(name="tiny-llama")
    assert runtime.for_specs(algorithm, model, {}, dataset, [cpu], 1) == []


def test_the_create_page_says_it_and_warns_when_it_outlasts_the_duration(
    client, project, alice, ready
):
    _dataset, _repo, spec = ready
    _ran(project, alice, spec, seconds_per_step=60.0, batch_size=1, start_up=0, save=0)
    client.force_login(alice)
    client.cookies["django_language"] = "zh-hans"

    page = client.post(
        reverse(PREDICT), _draft(ready, spec, max_steps=180, batch_size=1)
    ).content.decode()

    assert 'data-testid="runtime-estimate"' in page and "预计运行时长" in page
    assert "180 步" in page and "依据" in page
    assert 'data-testid="runtime-outlasts"' in page  # 3 hours against the form's 2 hours
    short = client.post(reverse(PREDICT), _draft(ready, spec, max_steps=60, batch_size=1))
    assert 'data-testid="runtime-outlasts"' not in short.content.decode()


def test_a_data_set_the_user_may_not_read_is_never_counted(
    client, project, other_project, alice, charlie, ready
):
    _dataset, _repo, spec = ready
    _ran(project, alice, spec, seconds_per_step=1.0, batch_size=1, start_up=0, save=0)
    theirs = factories.dataset(other_project, charlie, record_count=10**6, size_bytes=10**9)
    client.force_login(alice)
    post = _draft(ready, spec, max_steps=0, epochs=1, batch_size=1)
    post["train_dataset"] = str(theirs.pk)
    page = client.post(reverse(PREDICT), post).content.decode()
    assert 'data-testid="runtime-estimate"' not in page


def test_a_data_set_not_counted_yet_gives_no_estimate_without_a_step_limit(ready):
    dataset, _repo, _spec = ready
    algorithm = Algorithm.objects.get(code="sft_full")
    params = {"max_steps": 0, "packing": False}
    dataset.record_count = 0  # not yet validated
    assert runtime.planned_steps(algorithm, params, dataset, processes=1) is None
    assert runtime.planned_steps(algorithm, {"max_steps": 5}, dataset, processes=1) == 5
