"""对比损失曲线 in a real Chromium: jobs chosen on the list in edit mode, their loss
curves on one chart per loss, in 简体中文, a running job's curve growing live."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from finetune.models import JobStatus, MetricPoint
from finetune.states import transition
from tests import factories
from tests.e2e.conftest import log_in
from tests.finetune import pages_support as support

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def _curve(job, steps, *, eval_every=0):
    start = timezone.now() - timedelta(minutes=5)
    for step in steps:
        at = start + timedelta(seconds=step)
        MetricPoint.objects.create(job=job, worker="rank0", time=at, step=step, loss=3.0 / step)
        if eval_every and step % eval_every == 0:
            MetricPoint.objects.create(job=job, worker="rank0", time=at, step=step, eval_loss=1.0)


def test_jobs_chosen_on_the_list_are_compared_in_chinese_and_a_running_one_grows(
    page, project, alice
):
    sft = support.catalog()  # the real schema: its parameters have Chinese titles
    done = factories.job(
        project, alice, name="lr-3e-4", algorithm=sft, parameters={"learning_rate": 3e-4}
    )
    live = factories.job(
        project, alice, name="lr-1e-4", algorithm=sft, parameters={"learning_rate": 1e-4}
    )
    factories.job(project, alice, name="not-chosen")
    transition(live, JobStatus.RUNNING)
    _curve(done, range(1, 21), eval_every=5)
    _curve(live, range(1, 6))
    page.set_viewport_size({"width": 1280, "height": 900})
    log_in(page, "alice", "alice-password", language="zh-hans")

    page.get_by_test_id("edit-mode").click()
    page.get_by_label("lr-3e-4").check()
    page.get_by_label("lr-1e-4").check()
    with page.expect_navigation():
        page.get_by_test_id("compare").click()

    expect(page.locator("h1")).to_have_text("对比损失曲线")
    loss = page.get_by_test_id("compare-loss")
    # in the list's order: the newest first
    expect(loss).to_have_attribute("data-series", f"lr-1e-4 (#{live.pk})|lr-3e-4 (#{done.pk})")
    expect(loss).to_have_attribute("data-points", "20")
    # only the finished job was evaluated: one series, the other job's colour kept
    expect(page.get_by_test_id("compare-eval-loss")).to_have_attribute(
        "data-series", f"lr-3e-4 (#{done.pk})"
    )
    assert "学习率" in page.get_by_test_id("compare-parameters").inner_text()
    assert "not-chosen" not in page.content()
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    # the x axis counts whole steps
    ticks = loss.get_attribute("data-x-ticks").split("|")
    assert all(tick.isdigit() for tick in ticks)

    _curve(live, range(6, 31))  # the running job reports more steps
    expect(loss).to_have_attribute("data-points", "30", timeout=15_000)
    expect(page.get_by_test_id("monitor-state")).to_contain_text("实时")
