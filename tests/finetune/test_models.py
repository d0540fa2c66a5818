from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import translation

from finetune.models import Job, JobNodeSpec, Scenario
from scheduler.models import DeviceType, NodeSpec, ResourcePool
from tests import factories

pytestmark = pytest.mark.django_db


def test_the_five_scenarios_of_the_manual_are_seeded_in_both_languages():
    scenarios = {s.code: s for s in Scenario.objects.all()}
    assert set(scenarios) == {
        "llm/pretrain",
        "llm/sft",
        "llm/reward_model",
        "llm/rl",
        "t2i/finetune",
    }
    assert scenarios["llm/rl"].name_zh == "强化学习"
    assert scenarios["t2i/finetune"].task_type == "t2i"
    with translation.override("zh-hans"):
        assert scenarios["llm/sft"].display_name == "大语言模型微调"
    with translation.override("en"):
        assert scenarios["llm/sft"].display_name == "LLM fine-tuning"


def _refused(**changes) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.filter(pk=changes.pop("pk")).update(**changes)


def test_node_names_are_refused_together_with_a_pool(project, alice):
    job = factories.job(project, alice)
    pool = ResourcePool.objects.create(name="dedicated-a", dedicated=True)
    _refused(pk=job.pk, node_names=["node-1"], pool=pool)


def test_node_names_are_refused_together_with_a_driver_version(project, alice):
    job = factories.job(project, alice)
    _refused(pk=job.pk, node_names=["node-1"], driver_version="5.10.22")


def test_node_names_alone_or_pool_with_driver_version_are_accepted(project, alice):
    pinned = factories.job(project, alice, node_names=["node-1", "node-2"])
    pool = ResourcePool.objects.create(name="shared-a")
    pooled = factories.job(project, alice, pool=pool, driver_version="5.10.22")
    stored = Job.objects.in_bulk([pinned.pk, pooled.pk])  # as the database kept them
    assert stored[pinned.pk].node_names == ["node-1", "node-2"]
    assert (stored[pooled.pk].pool_id, stored[pooled.pk].driver_version) == (pool.pk, "5.10.22")


def test_node_count_must_be_at_least_one(project, alice):
    job = factories.job(project, alice)
    _refused(pk=job.pk, node_count=0)


@pytest.mark.parametrize("duration", [timedelta(0), timedelta(seconds=-1)])
def test_duration_must_be_positive(project, alice, duration):
    job = factories.job(project, alice)
    _refused(pk=job.pk, duration=duration)


def test_an_unknown_status_is_refused(project, alice):
    job = factories.job(project, alice)
    _refused(pk=job.pk, status="paused")


def test_the_deadline_is_the_start_plus_the_duration(project, alice):
    job = factories.job(project, alice, duration=timedelta(hours=3))
    assert job.deadline is None
    job.started_at = job.created_at
    assert job.deadline == job.created_at + timedelta(hours=3)


def test_a_job_keeps_its_node_specs_in_the_chosen_order(project, alice):
    job = factories.job(project, alice)
    JobNodeSpec.objects.filter(job=job).delete()
    small = factories.node_spec("mlu-1", 1)
    large = factories.node_spec("mlu-4", 4)
    JobNodeSpec.objects.create(job=job, spec=large, rank=0)
    JobNodeSpec.objects.create(job=job, spec=small, rank=1)
    assert job.ordered_node_specs() == [large, small]
    with pytest.raises(IntegrityError), transaction.atomic():
        JobNodeSpec.objects.create(job=job, spec=small, rank=2)


def test_a_node_spec_has_devices_exactly_when_it_has_a_device_type():
    with pytest.raises(IntegrityError), transaction.atomic():
        NodeSpec.objects.create(
            name="bad-mlu", cpu_millis=1000, memory_mib=1024, device_type=DeviceType.MLU
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        NodeSpec.objects.create(
            name="bad-cpu",
            cpu_millis=1000,
            memory_mib=1024,
            device_type=DeviceType.NONE,
            device_count=2,
        )
    spec = NodeSpec.objects.create(
        name="mlu-8", cpu_millis=64000, memory_mib=524288, device_type="mlu", device_count=8
    )
    assert spec.summary == "64 CPU · 512 GiB · 8 MLU"
    spec.device_model, spec.device_memory_gib = "MLU370-X8", 48
    assert spec.summary == "64 CPU · 512 GiB · 8 MLU370-X8 (48 GiB)"
    assert spec.processes_per_node == 8 and spec.memory_per_process_gib == 48


def test_a_node_specs_process_count_model_and_resource_name_are_checked():
    from django.core.exceptions import ValidationError

    def errors(**fields):
        values = {"name": "s", "cpu_millis": 1000, "memory_mib": 4096, "device_type": "mlu"}
        spec = NodeSpec(**{**values, "device_count": 1, **fields})
        with pytest.raises(ValidationError) as caught:
            spec.clean()
        return caught.value.message_dict

    assert "cpu_processes" in errors(cpu_processes=2)  # devices: one process each
    assert "device_model" in errors(device_type="none", device_count=0, device_model="H100")
    assert "device_resource" in errors(device_resource="mlu370")
    NodeSpec(
        name="ok",
        cpu_millis=1,
        memory_mib=1,
        device_type="mlu",
        device_count=1,
        device_resource="cambricon.com/mlu370",
    ).clean()
    cpu = NodeSpec(
        name="cpu", cpu_millis=2000, memory_mib=4096, device_type="none", cpu_processes=2
    )
    assert cpu.processes_per_node == 2 and cpu.memory_per_process_gib == 2


def test_data_set_names_are_unique_within_a_project(project, other_project, alice):
    factories.dataset(project, alice, name="chat")
    factories.dataset(other_project, alice, name="chat")
    with pytest.raises(IntegrityError), transaction.atomic():
        factories.dataset(project, alice, name="chat")


def test_a_member_who_leaves_the_project_loses_its_shared_objects_at_once(project, alice, bob):
    from accounts.models import Access, Membership
    from finetune import access

    job = factories.job(project, alice, level=Access.READ_WRITE)
    assert access.restrict(Job.objects.all(), bob, "stop").get() == job
    Membership.objects.filter(project=project, user=bob).get().delete()
    assert not access.restrict(Job.objects.all(), bob).exists()
