"""The create form (F1), clone (F3), the list's search and edit mode (F4, F8.3)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import translation

from accounts.models import Access
from finetune.models import Algorithm, Job, JobEvent, JobStatus, TaskType
from finetune.states import transition
from scheduler.models import ResourcePool
from tests import factories
from tests.finetune import pages_support as support

pytestmark = pytest.mark.django_db
CREATE = "finetune:job_create"


def test_a_member_creates_a_queued_job_with_its_event(client, alice, ready):
    client.force_login(alice)
    post = support.job_post(*ready, **{"param-epochs": "5", "access": Access.READ_ONLY})
    response = client.post(reverse(CREATE), post)
    job = Job.objects.get()
    assert response["Location"] == reverse("finetune:job_detail", args=[job.pk])
    assert job.status == JobStatus.QUEUED and job.queued_at is not None
    assert job.parameters["epochs"] == 5 and job.access == Access.READ_ONLY
    assert job.events.get().kind == JobEvent.Kind.CREATED
    assert job.duration.total_seconds() == 2 * 3600


def test_the_form_offers_only_the_chosen_scenarios_algorithms_and_data(
    client, project, alice, ready
):
    dataset, _repo, _spec = ready
    other = factories.dataset(
        project, alice, name="pretrain-text", scenario=factories.scenario("llm/pretrain")
    )
    client.force_login(alice)
    first = client.get(reverse(CREATE)).content.decode()  # the first scenario: pre-training
    assert f">{other.name}<" in first and f">{dataset.name}<" not in first
    sft = client.post(reverse(CREATE), {**support.job_post(*ready), "_refresh": "1"})
    assert f">{dataset.name}<" in sft.content.decode()
    assert f">{other.name}<" not in sft.content.decode()
    t2i = client.post(
        reverse(CREATE),
        {**support.job_post(*ready), "_refresh": "1", "task_type": TaskType.T2I},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert 'id="job-form-fields"' in t2i and "<html" not in t2i
    assert "tiny-sd" in t2i and "tiny-llama" not in t2i
    assert f">{dataset.name}<" not in t2i
    assert "Resolution" in t2i  # the text-to-image algorithm's generated parameters


def test_a_new_scenario_shows_its_algorithms_defaults_not_the_values_typed_for_another(
    client, alice, ready
):
    """The form opens on pre-training (learning rate 5e-05); choosing SFT moves the
    cascade to an SFT algorithm, whose fields show its own defaults, not pre-training's
    values carried over by name. Values typed stay while the algorithm stays."""
    client.force_login(alice)
    pretrain = support.job_post(*ready, algorithm_code="pretrain")
    sft = Algorithm.objects.get(code="sft_lora").scenario
    typed = {**pretrain, "_refresh": "1", "scenario": str(sft.pk), "param-epochs": "9"}
    form = client.post(reverse(CREATE), typed, HTTP_HX_REQUEST="true").content.decode()
    shown = Algorithm.objects.get(pk=re.search(r'name="_shown_algorithm" value="(\d+)"', form)[1])
    assert shown.scenario == sft
    default = shown.parameters_schema["properties"]["learning_rate"]["default"]
    assert default != 5e-05 and f'name="param-learning_rate" value="{default}"' in form
    assert 'name="param-epochs" value="9"' not in form
    kept = {**support.job_post(*ready), "_refresh": "1", "param-epochs": "9"}
    form = client.post(reverse(CREATE), kept, HTTP_HX_REQUEST="true").content.decode()
    assert 'name="param-epochs" value="9"' in form


def test_the_parameter_form_follows_the_schema_and_refuses_out_of_range_values(
    client, alice, ready
):
    client.force_login(alice)
    page = client.get(reverse(CREATE)).content.decode()
    assert 'name="param-learning_rate"' in page and 'name="param-lr_scheduler"' in page
    response = client.post(reverse(CREATE), support.job_post(*ready, **{"param-epochs": "0"}))
    assert response.status_code == 400
    assert "Ensure this value is greater than or equal to 1." in response.content.decode()
    assert not Job.objects.exists()


def test_an_empty_name_is_refused_on_its_field(client, alice, ready):
    client.force_login(alice)
    response = client.post(reverse(CREATE), support.job_post(*ready, name=""))
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()


def test_node_names_with_a_pool_are_refused_clearly(client, project, alice, ready):
    pool = ResourcePool.objects.create(name="team-pool", dedicated=True)
    pool.projects.add(project)
    client.force_login(alice)
    post = support.job_post(*ready, node_names="node-1", pool=str(pool.pk))
    response = client.post(reverse(CREATE), post)
    assert response.status_code == 400
    assert (
        "Node names cannot be combined with a dedicated resource pool or a driver version."
        in response.content.decode()
    )


def test_a_job_may_not_be_more_open_than_its_data(client, project, alice, ready):
    _dataset, repo, spec = ready
    readonly = support.good_dataset(project, alice, level=Access.READ_ONLY, name="ro-data")
    client.force_login(alice)
    post = support.job_post(readonly, repo, spec, access=Access.READ_WRITE)
    page = client.post(reverse(CREATE), post).content.decode()
    assert "Others&#x27; access may be at most Read-only." in page
    assert "ro-data" in page and not Job.objects.exists()


def test_a_bad_data_set_is_refused_with_the_row_level_report(client, project, alice, ready):
    _dataset, repo, spec = ready
    broken = support.bad_dataset(project, alice)
    client.force_login(alice)
    response = client.post(reverse(CREATE), support.job_post(broken, repo, spec))
    page = response.content.decode()
    assert response.status_code == 400 and not Job.objects.exists()
    assert 'data-testid="data-report"' in page and "invalid JSON" in page


def test_node_specs_keep_their_order_and_the_totals_multiply(client, alice, ready):
    dataset, repo, first = ready
    second = factories.node_spec("mlu-4", devices=4)
    for name in ("mlu-node-2", "mlu-node-3"):
        support.node(name)
    client.force_login(alice)
    post = support.job_post(dataset, repo, first, node_specs=[second.pk, first.pk], node_count="3")
    client.post(reverse(CREATE), post)
    job = Job.objects.get()
    assert job.ordered_node_specs() == [second, first]
    prediction = client.post(
        reverse("finetune:job_prediction"), {"node_specs": [second.pk], "node_count": "3"}
    ).content.decode()
    assert "24 CPU · 96 GiB · 12 MLU" in prediction


def test_the_prediction_says_whether_the_job_starts_now_queues_or_cannot_run(
    client, project, alice, ready
):
    _dataset, _repo, spec = ready
    client.force_login(alice)

    def predicted(**extra) -> str:
        return _predicted(client, spec, **extra)

    assert "Starts now." in predicted()
    _hold(project, alice, "mlu-node-1", devices=list(range(8)))
    assert "Queued: position 1 in the queue, expected to start by" in predicted()
    assert "Cannot run: " in predicted(node_count="2")


def _predicted(client, spec, **extra) -> str:
    """The create page's prediction for a draft of one node of `spec`, for two hours."""
    data = {"node_specs": [spec.pk], "node_count": "1", "duration_preset": "2", **extra}
    return client.post(reverse("finetune:job_prediction"), data).content.decode()


def _hold(project, alice, node: str, devices: list[int]) -> None:
    """A job of eight MLUs running on `node` for five hours."""
    holder = factories.job(project, alice, duration=timedelta(hours=5))
    transition(
        holder,
        JobStatus.RUNNING,
        changes={
            "placement": [{"rank": 0, "node": node, "devices": devices}],
            "spec_in_use": factories.node_spec("mlu-8", devices=8),
        },
    )


def test_with_kueue_the_prediction_plans_over_the_quota_and_names_kueues_queue(
    client, project, alice, ready, settings
):
    """JINGTIAO_ADMISSION=kueue: the create page's answer comes from the planner over the
    ClusterQueue's quota (one node of the two, here), in the reader's language."""
    from django.utils import timezone

    from scheduler.models import KueueQueue

    settings.JINGTIAO_EXECUTOR, settings.JINGTIAO_ADMISSION = "kubernetes", "kueue"
    _dataset, _repo, spec = ready
    support.node("mlu-node-2")
    KueueQueue.objects.create(
        name="jingtiao",
        local_queues=["jingtiao"],
        flavors=[{"name": "mlu", "node_labels": {}, "quotas": {"cambricon.com/mlu": "8"}}],
        synced_at=timezone.now(),
    )
    client.force_login(alice)

    def predicted(**extra) -> str:
        return _predicted(client, spec, **extra)

    assert "Starts now." in predicted()
    _hold(project, alice, "mlu-node-2", devices=[])
    # the quota is the one node's eight MLUs, and the running job holds them
    assert "Queued: position 1 in Kueue&#x27;s queue jingtiao" in predicted()
    assert "Cannot run: " in predicted(node_count="2")  # two nodes exceed the quota
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
    chinese = predicted()
    assert "Kueue 队列 jingtiao 中第 1 位" in chinese and "Queued" not in chinese


def test_clone_prefills_the_form_and_records_its_source(client, project, alice, bob, ready):
    dataset, repo, spec = ready
    client.force_login(alice)
    client.post(reverse(CREATE), support.job_post(*ready, **{"param-epochs": "7", "access": "ro"}))
    source = Job.objects.get()
    client.force_login(bob)
    form = client.get(reverse("finetune:job_clone", args=[source.pk])).content.decode()
    assert 'value="sft-run-clone"' in form and 'value="7"' in form
    post = support.job_post(dataset, repo, spec, name="bobs-copy", **{"param-epochs": "7"})
    client.post(reverse("finetune:job_clone", args=[source.pk]), post)
    clone = Job.objects.get(name="bobs-copy")
    assert clone.cloned_from == source and clone.creator == bob and clone.parameters["epochs"] == 7


def test_the_list_searches_filters_and_sorts(client, project, alice, bob):
    factories.job(project, alice, name="llama-sft")
    factories.job(project, bob, name="qwen-dpo", status=JobStatus.RUNNING)
    client.force_login(alice)
    url = reverse("finetune:job_list")
    page = client.get(url, {"q": "llama"}).content.decode()
    assert "llama-sft" in page and "qwen-dpo" not in page
    page = client.get(url, {"status": "running"}).content.decode()
    assert "qwen-dpo" in page and "llama-sft" not in page
    page = client.get(url, {"creator": "bob"}).content.decode()
    assert "qwen-dpo" in page and "llama-sft" not in page
    page = client.get(url, {"sort": "name"}).content.decode()
    assert page.index("llama-sft") < page.index("qwen-dpo")
    page = client.get(url, {"sort": "-name"}).content.decode()
    assert page.index("qwen-dpo") < page.index("llama-sft")


def test_the_list_filters_by_spec_and_save_model_address(client, project, alice):
    repo = factories.model_repo(project, alice, name="chat-models")
    factories.job(project, alice, name="into-chat", model_repo=repo)
    other = factories.job(project, alice, name="elsewhere")
    big = factories.node_spec("mlu-8", devices=8)
    other.spec_choices.update(spec=big)
    client.force_login(alice)
    url = reverse("finetune:job_list")
    page = client.get(url, {"model_repo": "chat-mod"}).content.decode()
    assert "into-chat" in page and "elsewhere" not in page
    page = client.get(url, {"spec": big.pk}).content.decode()
    assert "elsewhere" in page and "into-chat" not in page


def test_htmx_gets_only_the_table(client, project, alice):
    factories.job(project, alice, name="partial-run")
    client.force_login(alice)
    response = client.get(reverse("finetune:job_list"), {"q": "partial"}, HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert "partial-run" in page and "<html" not in page and 'id="job-table-wrap"' in page


def test_batch_delete_lists_the_chosen_jobs_before_deleting(client, project, alice):
    one, two, _kept = (factories.job(project, alice, name=n) for n in ("one", "two", "kept"))
    client.force_login(alice)
    url = reverse("finetune:job_bulk_delete")
    confirm = client.post(url, {"pk": [one.pk, two.pk]}).content.decode()
    assert "one" in confirm and "two" in confirm and "kept" not in confirm
    assert Job.objects.count() == 3
    client.post(url, {"pk": [one.pk, two.pk], "confirm": "1"})
    assert list(Job.objects.values_list("name", flat=True)) == ["kept"]


def test_select_all_reruns_the_filter_on_the_server(client, project, alice):
    for name in ("sweep-1", "sweep-2", "keep-me"):
        factories.job(project, alice, name=name)
    client.force_login(alice)
    url = reverse("finetune:job_bulk_delete")
    # A posted id outside the filter is ignored: the server selects by the filter alone.
    keep = Job.objects.get(name="keep-me")
    client.post(url, {"_all": "1", "q": "sweep", "pk": [keep.pk], "confirm": "1"})
    assert list(Job.objects.values_list("name", flat=True)) == ["keep-me"]


def test_edit_mode_draws_check_boxes(client, project, alice):
    job = factories.job(project, alice)
    client.force_login(alice)
    page = client.get(reverse("finetune:job_list"), {"edit": "1"}).content.decode()
    assert f'name="pk" value="{job.pk}"' in page and 'name="_all"' in page


def test_the_detail_page_shows_specs_events_and_its_tabs(client, project, alice):
    job = factories.job(
        project,
        alice,
        run_command="torchrun train.py",
        placement=[{"rank": 0, "node": "node-a", "devices": [0]}],
    )
    job.spec_in_use = job.ordered_node_specs()[0]
    job.save()
    client.force_login(alice)
    url = reverse("finetune:job_detail", args=[job.pk])
    page = client.get(url).content.decode()
    assert "torchrun train.py" in page and "node-a" in page and "In use" in page
    assert "The job has no log yet." in client.get(url, {"tab": "logs"}).content.decode()
    monitoring = client.get(url, {"tab": "monitoring"}).content.decode()
    assert 'data-chart="loss"' in monitoring and 'id="monitor-config"' in monitoring
    assert "vendor/uPlot.iife.min.js" in monitoring and "vendor/uPlot" not in page


def _created_in_chinese(client, alice, ready) -> tuple[Job, str]:
    """A job created from the form, and its page as a Chinese reader gets it."""
    client.force_login(alice)
    client.post(reverse(CREATE), support.job_post(*ready))
    job = Job.objects.get()
    client.cookies["django_language"] = "zh-hans"
    with translation.override("zh-hans"):
        page = client.get(reverse("finetune:job_detail", args=[job.pk])).content.decode()
    return job, page


def test_the_creation_event_is_not_called_a_creation_time_in_chinese(client, alice, ready):
    """Issue 19, item 10: the event and the list's column shared one msgid, so the
    creation event read 创建时间 / 创建时间."""
    job, page = _created_in_chinese(client, alice, ready)
    with translation.override("zh-hans"):
        assert str(JobEvent.Kind.CREATED.label) == "创建"
    assert "<td>创建</td>" in page or ">创建<" in page
    assert JobEvent.objects.get(job=job).message == "Job created"


def test_parameter_values_read_in_the_pages_language(client, alice, ready):
    """Issue 19, item 8: True/False and cosine/epoch/auto reached the Chinese page."""
    _job, page = _created_in_chinese(client, alice, ready)
    with translation.override("zh-hans"):
        form = client.post(
            reverse(CREATE), {**support.job_post(*ready), "_refresh": "1"}
        ).content.decode()
    for shown in ("<dd>余弦衰减</dd>", "<dd>每轮</dd>", "<dd>自动</dd>", "<dd>是</dd>"):
        assert shown in page, shown
    for raw in ("<dd>cosine</dd>", "<dd>True</dd>", "<dd>epoch</dd>"):
        assert raw not in page, raw
    assert ">余弦衰减</option>" in form


def test_a_text_to_image_resolution_of_zero_reads_as_the_base_models_own():
    """Issue 19, item 7: the default resolution is the base model's own (32 px for the
    tiny demo model, not 512 px that no CPU finishes); the job's page says so in words."""
    from finetune.forms.parameters import value_label
    from trainer.catalog import ALGORITHMS

    schema = next(a for a in ALGORITHMS if a.code == "t2i_lora").parameters_schema
    resolution = schema["properties"]["resolution"]
    assert resolution["default"] == 0
    with translation.override("zh-hans"):
        assert value_label(resolution, 0) == "基础模型自身"
        assert value_label(resolution, 512) == 512
    assert value_label(resolution, 0) == "the base model's own"
