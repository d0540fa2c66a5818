"""A member runs the whole job workflow in a real Chromium, in English and in 简体中文:
create through the cascading form, find, search, clone, change duration and priority,
stop, and batch-delete; bad inputs show their messages in the page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from finetune.models import Dataset, Job, JobStatus
from scheduler.models import NodeSpec, ResourcePool
from tests import factories
from tests.e2e.conftest import log_in
from tests.finetune import pages_support as support

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

LABELS = {
    "en": {
        "create": "Create LLM fine-tuning",
        "sft": "LLM fine-tuning",
        "lora": "Supervised fine-tuning (LoRA)",
        "submit": "Create",
        "queued": "Queued",
        "stopped": "Stopped",
        "clone": "Clone",
        "duration": "Change duration",
        "priority": "Change priority",
        "stop": "Stop",
        "save": "Confirm the change",
        "two_days": "2 days",
        "confirm_stop": "Confirm the stop",
        "confirm_delete": "Confirm the deletion",
        "edit": "Edit",
        "delete_selected": "Delete selected",
        "operations": "Operations",
    },
    "zh-hans": {
        "create": "创建大模型精调",
        "sft": "大语言模型微调",
        "lora": "监督微调（LoRA）",  # noqa: RUF001 (the catalog's own name)
        "submit": "创建",
        "queued": "排队中",
        "stopped": "停止",
        "clone": "克隆",
        "duration": "调整使用时长",
        "priority": "调整优先级",
        "stop": "停止",
        # the manual's words (F8): 确认调整, 确认停止, 确认删除
        "save": "确认调整",
        "two_days": "2 日",
        "confirm_stop": "确认停止",
        "confirm_delete": "确认删除",
        "edit": "编辑",
        "delete_selected": "删除所选",
        "operations": "操作",
    },
}


@pytest.fixture
def prepared(project, alice):
    support.catalog()
    support.good_dataset(project, alice, name="chat")
    factories.model_repo(project, alice, name="chat-models")
    factories.node_spec()
    support.node()


def _open_operations(page, scope) -> None:
    scope.get_by_test_id("operations").first.locator("summary").click()


def _create(page, words: dict, name: str) -> None:
    page.get_by_role("link", name=words["create"]).click()
    page.select_option("#id_scenario", label=words["sft"])
    # Wait for the scenario's refresh to land before choosing the algorithm: a
    # choice made in a select that htmx is about to replace would be lost.
    expect(page.locator("#id_train_dataset")).to_contain_text("chat")
    expect(page.locator("#id_algorithm")).to_contain_text(words["lora"])
    page.wait_for_load_state("networkidle")
    page.select_option("#id_algorithm", label=words["lora"])
    expect(page.locator("input[name='param-lora_rank']")).to_be_visible(timeout=15_000)
    expect(page.get_by_test_id("prediction")).to_contain_text("mlu-1")
    page.fill("#id_name", name)
    page.fill("input[name='param-epochs']", "2")
    page.get_by_role("button", name=words["submit"], exact=True).click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_a_member_runs_the_whole_job_workflow(page, prepared, alice, language):
    words = LABELS[language]
    log_in(page, "alice", "alice-password")
    page.wait_for_url("**/jobs/")
    if language != "en":
        with page.expect_navigation():
            page.select_option("#language-select", language)

    _create(page, words, "first-run")
    expect(page.get_by_test_id("status").first).to_have_text(words["queued"])
    job = Job.objects.get(name="first-run")
    assert job.parameters["epochs"] == 2 and job.algorithm.code == "sft_lora"

    page.goto("/jobs/")
    table = page.get_by_test_id("job-table")
    expect(table.get_by_role("row", name=re.compile("first-run"))).to_contain_text(words["queued"])
    page.fill("#id_q", "first")
    page.press("#id_q", "Enter")
    page.wait_for_url(re.compile(r"q=first"))
    expect(table.get_by_role("row")).to_have_count(2)  # the header and the job

    _open_operations(page, table)
    page.get_by_role("menuitem", name=words["clone"]).click()
    expect(page.locator("#id_name")).to_have_value(re.compile("first-run-"))
    page.fill("#id_name", "second-run")
    page.get_by_role("button", name=words["submit"], exact=True).click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    assert Job.objects.get(name="second-run").cloned_from == job

    _open_operations(page, page.locator(".page-header"))
    page.get_by_role("menuitem", name=words["duration"]).click()
    page.select_option("#id_duration_preset", "48")
    page.get_by_role("button", name=words["save"]).click()
    expect(page.get_by_test_id("duration")).to_have_text(words["two_days"])

    _open_operations(page, page.locator(".page-header"))
    page.get_by_role("menuitem", name=words["priority"]).click()
    page.select_option("#id_priority", "40")
    page.get_by_role("button", name=words["save"]).click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    assert Job.objects.get(name="second-run").priority == 40

    _open_operations(page, page.locator(".page-header"))
    page.get_by_role("menuitem", name=words["stop"]).click()
    page.get_by_role("button", name=words["confirm_stop"]).click()
    expect(page.get_by_test_id("status").first).to_have_text(words["stopped"])
    assert Job.objects.get(name="second-run").status == JobStatus.STOPPED

    page.goto("/jobs/")
    page.get_by_role("link", name=words["edit"]).click()
    page.get_by_role("checkbox", name="first-run").check()
    page.get_by_role("checkbox", name="second-run").check()
    page.get_by_role("button", name=words["delete_selected"]).click()
    chosen = page.get_by_test_id("chosen-jobs")
    expect(chosen).to_contain_text("first-run")
    expect(chosen).to_contain_text("second-run")
    page.get_by_role("button", name=words["confirm_delete"]).click()
    page.wait_for_url(re.compile(r"/jobs/"))
    assert not Job.objects.exists()


def test_bad_inputs_show_their_messages_in_the_page(page, prepared, project, alice):
    pool = ResourcePool.objects.create(name="team-pool", dedicated=True)
    pool.projects.add(project)
    log_in(page, "alice", "alice-password")
    page.wait_for_url("**/jobs/")
    page.goto("/jobs/new/")
    page.select_option("#id_scenario", label="LLM fine-tuning")
    expect(page.locator("#id_train_dataset")).to_contain_text("chat")
    page.fill("#id_name", "")
    page.fill("input[name='param-epochs']", "5000")
    page.fill("#id_node_names", "mlu-node-1")
    page.select_option("#id_pool", label="team-pool")
    page.get_by_role("button", name="Create", exact=True).click()
    form = page.locator("#job-form")
    expect(form.locator("[data-field=name] .error")).to_have_text("This field is required.")
    expect(form.locator("[data-field=epochs] .error")).to_contain_text("less than or equal to 1000")
    expect(form.locator("[data-field=node_names] .error")).to_contain_text(
        "Node names cannot be combined with a dedicated resource pool"
    )
    assert not Job.objects.exists()


def test_what_is_typed_while_the_choices_refresh_is_kept(page, prepared, project, alice):
    """Issue 19, item 1: a data set chosen re-renders the form's fields; what the user
    typed meanwhile (name, steps, duration, node spec) survives the refresh's answer."""
    support.good_dataset(project, alice, name="chat-2")
    factories.node_spec("mlu-4", devices=4)
    log_in(page, "alice", "alice-password")
    page.wait_for_url("**/jobs/")
    page.goto("/jobs/new/")
    page.select_option("#id_scenario", label="LLM fine-tuning")
    expect(page.locator("#id_train_dataset")).to_contain_text("chat-2")
    page.wait_for_load_state("networkidle")

    held = []

    def hold_refreshes(route):
        body = route.request.post_data or ""
        if "_refresh=1" in body:
            held.append(route)  # answered once the user has typed
        else:
            route.continue_()

    page.locator("#id_name").evaluate("e => { e.dataset.old = '1'; }")  # gone once swapped
    page.route("**/jobs/new/", hold_refreshes)
    page.select_option("#id_train_dataset", label="chat-2")
    page.fill("#id_name", "typed-while-refreshing")
    page.fill("input[name='param-max_steps']", "37")
    page.select_option("#id_duration_preset", "48")
    second = str(NodeSpec.objects.get(name="mlu-4").pk)
    page.locator("select[name=node_specs]").first.select_option(second)
    for _ in range(50):
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "the refresh was never sent"
    with page.expect_response(lambda r: "_refresh=1" in (r.request.post_data or "")):
        held[0].continue_()
    page.unroute("**/jobs/new/")
    page.wait_for_load_state("networkidle")
    # the fields were replaced: the refresh's answer landed
    page.wait_for_function("() => !document.querySelector('#id_name').dataset.old")

    expect(page.locator("#id_train_dataset")).to_have_value(
        str(Dataset.objects.get(name="chat-2").pk)
    )
    expect(page.locator("#id_name")).to_have_value("typed-while-refreshing")
    expect(page.locator("input[name='param-max_steps']")).to_have_value("37")
    expect(page.locator("#id_duration_preset")).to_have_value("48")
    expect(page.locator("select[name=node_specs]").first).to_have_value(second)
    page.get_by_role("button", name="Create", exact=True).click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    job = Job.objects.get(name="typed-while-refreshing")
    assert job.parameters["max_steps"] == 37 and job.duration.total_seconds() == 48 * 3600
    assert job.ordered_node_specs()[0].name == "mlu-4"


def test_the_list_fits_1280_px_and_one_operations_menu_is_open_at_a_time(
    page, prepared, project, alice
):
    """Issue 19, item 5: at 1280 px the list was 1,794 px wide, and an open 操作 menu
    stayed open over the next row's button."""
    long_names = ["a-rather-long-job-name-for-the-list", "second-job-with-a-long-name"]
    for name in long_names:
        factories.job(project, alice, name=name)
    page.set_viewport_size({"width": 1280, "height": 800})
    log_in(page, "alice", "alice-password", language="zh-hans")

    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    menus = page.get_by_test_id("job-table").get_by_test_id("operations")
    expect(menus).to_have_count(2)
    menus.nth(0).locator("summary").click()
    expect(menus.nth(0)).to_have_attribute("open", "")
    menus.nth(1).locator("summary").click()
    expect(menus.nth(1)).to_have_attribute("open", "")
    expect(menus.nth(0)).not_to_have_attribute("open", "")
    page.locator("h1").click()
    expect(menus.nth(1)).not_to_have_attribute("open", "")


def test_a_running_jobs_duration_takes_a_custom_three_and_a_half_hours(
    page, prepared, project, alice
):
    """Issue 19, item 2: the custom duration field had step=0.5 min=0.1, so the browser
    refused 3 and 3.5 ("the two nearest valid values are 3.1 and 3.6")."""
    from finetune.states import transition

    job = factories.job(project, alice, name="long-run")
    transition(job, JobStatus.RUNNING)
    log_in(page, "alice", "alice-password", language="zh-hans")
    page.goto(f"/jobs/{job.pk}/duration/")
    page.select_option("#id_duration_preset", "custom")
    page.fill("#id_duration_custom_hours", "3.5")
    assert page.locator("#id_duration_custom_hours").evaluate("e => e.checkValidity()")
    page.get_by_role("button", name="确认调整").click()
    page.wait_for_url(re.compile(rf"/jobs/{job.pk}/$"))
    job.refresh_from_db()
    assert job.duration.total_seconds() == 3.5 * 3600


def test_a_preset_fills_the_parameters_and_the_preview_follows_the_form(
    page, prepared, project, alice
):
    """The create form's presets, folded 高级参数 and 运行配置预览, in 简体中文."""
    log_in(page, "alice", "alice-password", language="zh-hans")
    page.goto("/jobs/new/")
    page.select_option("#id_scenario", label="大语言模型微调")
    expect(page.locator("#id_train_dataset")).to_contain_text("chat")
    page.wait_for_load_state("networkidle")
    page.fill("#id_name", "with-a-preset")
    expect(page.get_by_test_id("advanced-parameters")).not_to_have_attribute("open", "")
    assert not page.locator("input[name='param-warmup_ratio']").is_visible()

    page.select_option("[data-testid=preset]", "quick")
    expect(page.get_by_test_id("preset-applied")).to_contain_text("快速试跑")
    expect(page.locator("input[name='param-max_steps']")).to_have_value("20")
    expect(page.locator("#id_name")).to_have_value("with-a-preset")
    # the preset changed advanced values (evaluation every 10 steps): they unfold
    expect(page.get_by_test_id("advanced-parameters")).to_have_attribute("open", "")
    expect(page.locator("input[name='param-eval_steps']")).to_have_value("10")

    page.get_by_test_id("launch-preview").locator("summary").click()
    command = page.get_by_test_id("launch-command")
    expect(command).to_have_text("python -m trainer run --spec spec.json")
    expect(page.get_by_test_id("launch-config")).to_contain_text('"max_steps": 20')
    page.fill("input[name='param-max_steps']", "33")
    page.locator("input[name='param-max_steps']").dispatch_event("change")
    expect(page.get_by_test_id("launch-config")).to_contain_text('"max_steps": 33')
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    # the sticky footer (Create, the prediction, the open preview) leaves the form in view
    footer = page.locator(".form-footer").bounding_box()
    assert footer["height"] <= 0.5 * page.viewport_size["height"]

    page.get_by_role("button", name="创建", exact=True).click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    job = Job.objects.get(name="with-a-preset")
    assert job.parameters["max_steps"] == 33 and job.parameters["logging_steps"] == 1
