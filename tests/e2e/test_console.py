"""A member logs in, finds the menu of the manual, switches language and project."""

import pytest
from playwright.sync_api import expect

from accounts.models import Access, Membership
from tests import factories
from tests.e2e.conftest import log_in

pytestmark = [
    pytest.mark.browser,
    # restore the rows the migrations seeded (scenarios) after each browser test
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_a_member_logs_in_and_finds_the_fine_tuning_menu(page, project, alice, tmp_path):
    factories.job(project, alice, name="first-sft", level=Access.NONE)
    log_in(page, "alice", "alice-password")
    page.wait_for_url("**/jobs/")
    menu = page.get_by_role("complementary", name="Main menu")
    assert menu.get_by_text("Training management").is_visible()
    assert menu.get_by_role("link", name="LLM fine-tuning").is_visible()
    assert page.get_by_test_id("current-user").inner_text() == "alice"
    row = page.get_by_test_id("job-table").get_by_role("row", name="first-sft")
    assert "Queued" in row.inner_text()
    page.screenshot(path=str(tmp_path / "jobs-en.png"))


def test_the_console_switches_to_simplified_chinese(page, project, alice):
    log_in(page, "alice", "alice-password", language="zh-hans")
    menu = page.get_by_role("complementary")
    assert menu.get_by_text("训练管理").is_visible()
    assert menu.get_by_role("link", name="大模型精调").is_visible()
    assert page.locator("h1").inner_text() == "大模型精调"
    assert page.get_by_role("button", name="退出登录").is_visible()


def test_switching_project_shows_that_projects_jobs(page, project, other_project, alice, charlie):
    Membership.objects.create(project=other_project, user=alice)
    factories.job(project, alice, name="demo-job")
    factories.job(other_project, charlie, name="research-job", level=Access.READ_ONLY)
    log_in(page, "alice", "alice-password")
    page.wait_for_url("**/jobs/")
    table = page.get_by_test_id("job-table")
    assert table.get_by_text("demo-job").is_visible()
    with page.expect_navigation():
        page.select_option("#project-select", label="research")
    assert table.get_by_text("research-job").is_visible()
    assert table.get_by_text("demo-job").count() == 0


def test_a_wrong_password_shows_a_message(page, alice):
    log_in(page, "alice", "wrong")
    assert page.get_by_role("alert").is_visible()
    assert "correct username and password" in page.get_by_role("alert").inner_text()


def test_logging_out_returns_to_the_login_page(page, alice):
    log_in(page, "alice", "alice-password")
    page.wait_for_url("**/jobs/")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/accounts/login/")
    page.goto("/jobs/")
    assert "/accounts/login/" in page.url


def test_the_pages_and_the_admin_pass_the_content_security_policy(page, project, alice, admin):
    """Each page is opened (the fixture fails on any violation), and an inline script
    injected into one is refused, so the policy is really enforced."""
    factories.job(project, alice, name="csp-probe", level=Access.NONE)
    log_in(page, "admin", "admin-password")
    page.wait_for_url("**/jobs/")
    for url in ("/jobs/", "/jobs/new/", "/datasets/", "/repos/", "/admin/", "/admin/finetune/job/"):
        page.goto(url)
        page.wait_for_load_state("networkidle")
    ran = page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.__injected = true";
            document.head.appendChild(script);
            return window.__injected === true;
        }"""
    )
    assert ran is False
    page.wait_for_timeout(200)
    assert any("inline" in message for message in page.csp_violations)
    page.csp_violations.clear()


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_a_failed_jobs_page_stays_narrow_with_its_log_folded(page, project, alice, language):
    """Issue 19, item 3: a traceback in the status made the page 8,837 px wide."""
    from finetune import states
    from finetune.models import JobEvent

    job = factories.job(project, alice, name="failed-sft", level=Access.NONE)
    states.transition(job, "running")
    traceback = "\n".join(["Traceback (most recent call last):", *["  frame " + "x" * 600] * 25])
    states.transition(
        job,
        "failed",
        reason="worker 0 exited with code 1: " + "/data/" + "very-long-path-" * 30,
        source=JobEvent.Source.CLUSTER,
        data={"log_excerpt": traceback},
    )
    page.set_viewport_size({"width": 1280, "height": 900})
    log_in(page, "alice", "alice-password")
    page.wait_for_url("**/jobs/")
    if language != "en":
        with page.expect_navigation():
            page.select_option("#language-select", language)
    page.goto(f"/jobs/{job.pk}/")
    folded = page.get_by_test_id("failure-log")
    assert not folded.locator("pre").is_visible()  # folded until asked for
    folded.locator("summary").click()
    assert folded.locator("pre").is_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate(  # what sticks out, should anything: named in the failure
        "[...document.querySelectorAll('*')]"
        ".filter(e => e.getBoundingClientRect().right > 1290)"
        ".slice(0, 5).map(e => e.tagName + '.' + e.className)"
    )
    assert width <= 1280, (width, wide)
    label = {"en": "Last lines of its log", "zh-hans": "日志末尾"}[language]
    assert page.get_by_text(label, exact=True).is_visible()


def test_the_details_tab_follows_the_job_from_queued_to_succeeded(page, project, alice):
    """Issue 19, item 4: the 详情 tab showed 排队中 for 230 s while the job ran and ended."""
    from playwright.sync_api import expect

    from finetune import states

    job = factories.job(project, alice, name="live-sft", level=Access.NONE)
    log_in(page, "alice", "alice-password", language="zh-hans")
    page.goto(f"/jobs/{job.pk}/")
    badge = page.get_by_test_id("status")
    expect(badge).to_have_text("排队中")
    states.transition(job, "running")
    expect(badge).to_have_text("运行中", timeout=15_000)
    states.transition(job, "succeeded", reason="All workers exited with code 0")
    expect(badge).to_have_text("成功", timeout=15_000)
    # an ended job's page asks for nothing more
    expect(page.get_by_test_id("details-refresh")).to_have_count(0)


def test_a_waiting_job_shows_its_expected_and_latest_starts_in_chinese(page, project, alice):
    """Issue 14, items 3 and 4: the expected start (预计), the latest (最晚) and what the
    job waits for, in the list and on the detail page, with no English but names."""
    import os
    from datetime import timedelta

    from django.utils import timezone

    from finetune.models import Job
    from scheduler import admission
    from scheduler.models import Node

    Node.objects.create(
        name="mlu-a", cpu_millis=64000, memory_mib=512 * 1024, device_type="mlu", device_count=1
    )
    running = factories.job(project, alice, name="long-run", duration=timedelta(hours=6))
    waiting = factories.job(project, alice, name="behind-it", duration=timedelta(hours=2))
    Job.objects.filter(pk__in=[running.pk, waiting.pk]).update(queued_at=timezone.now())
    admission.admit()
    Job.objects.filter(pk=running.pk).update(
        progress=0.5, eta_at=timezone.now() + timedelta(hours=1)
    )
    admission.admit()

    log_in(page, "alice", "alice-password", language="zh-hans")
    forecast = page.get_by_test_id("forecast").first
    listed = forecast.inner_text()
    assert "预计" in listed and "最晚" in listed, listed
    assert "等待其节点上 1 个运行中的任务结束" in forecast.get_attribute("title")
    # both starts fit in the list at 1280 px, as the list without them does
    page.set_viewport_size({"width": 1280, "height": 900})
    shots = os.environ.get("JINGTIAO_SCREENSHOTS")
    if shots:
        page.screenshot(path=f"{shots}/expected-start-list.png", full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    page.goto(f"/jobs/{waiting.pk}/")
    detail = page.get_by_test_id("forecast").inner_text()
    assert "排队中" in detail and "预计" in detail and "最晚" in detail, detail
    assert "等待其节点上 1 个运行中的任务结束" in detail
    if shots:
        page.screenshot(path=f"{shots}/expected-start-detail.png", full_page=True)
    ascii_words = [w for w in detail.split() if w.isascii() and w.isalpha()]
    assert ascii_words == [], ascii_words


def test_sharing_turned_off_and_on_in_the_chinese_admin_gives_the_levels_back(
    browser, live_server, project, alice, bob, admin
):
    """Issue 19, item 6, as an operator and a member live it: in 简体中文, the operator
    turns the project's sharing off, bob loses alice's shared job, the operator turns
    it on again and bob has it back at the level alice chose (只读)."""
    job = factories.job(project, alice, name="shared-run", level=Access.READ_ONLY)
    contexts = [browser.new_context(base_url=live_server.url) for _ in range(2)]
    operator, member = (context.new_page() for context in contexts)
    try:
        for page, who in ((operator, "admin"), (member, "bob")):
            log_in(page, who, f"{who}-password")
            page.wait_for_load_state()
            page.goto("/jobs/")
            with page.expect_navigation():
                page.select_option("#language-select", "zh-hans")

        def act(action: str) -> None:
            operator.goto("/admin/accounts/project/")
            operator.locator(f"input[name=_selected_action][value='{project.pk}']").check()
            operator.select_option("select[name=action]", action)
            with operator.expect_navigation():
                operator.locator("button[name=index]").click()

        act("turn_sharing_off")
        expect(operator.locator(".messagelist")).to_contain_text("共享")
        member.goto("/jobs/")
        expect(member.get_by_test_id("job-table")).not_to_contain_text("shared-run")
        assert member.goto(f"/jobs/{job.pk}/").status == 404

        act("turn_sharing_on")
        member.goto("/jobs/")
        row = member.get_by_test_id("job-table").get_by_role("row", name="shared-run")
        expect(row).to_be_visible()
        member.goto(f"/jobs/{job.pk}/")
        expect(member.get_by_test_id("job-access")).to_have_text("只读")
    finally:
        for context in contexts:
            context.close()
