"""A real job watched in a real Chromium (F7): a tiny SFT run on the local
executor reports to the live server; its charts fill while it runs, its progress
shows on the list and the detail page, and once it ended its logs and events are
still there, in English and in 简体中文."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from finetune.models import Job, JobStatus
from scheduler import admission
from scheduler.executors import get_executor
from scheduler.settling import settle_running_jobs
from tests.e2e.conftest import log_in
from tests.realjobs import queued_sft_job, queued_t2i_job, settled

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


@pytest.fixture
def executor(settings, live_server):
    settings.JINGTIAO_EXECUTOR = "local"
    settings.JINGTIAO_STOP_GRACE_SECONDS = 2
    settings.JINGTIAO_REPORT_URL = live_server.url
    settings.JINGTIAO_REPORT_INTERVAL_SECONDS = 1
    settings.JINGTIAO_RESOURCE_SAMPLE_SECONDS = 1
    get_executor.cache_clear()
    yield get_executor()
    get_executor.cache_clear()


@pytest.fixture
def launched(project, alice, executor):
    """A tiny LoRA SFT job with validation, admitted and running as a real process."""
    job = queued_sft_job(
        project,
        alice,
        executor,
        rows=64,
        repo="watched",
        name="watched-run",
        parameters={
            "max_steps": 160,  # long enough to be watched growing on a fast machine
            "batch_size": 4,
            "max_length": 128,
            "logging_steps": 1,
            "eval_strategy": "steps",
            "eval_steps": 10,
        },
    )
    assert admission.run_admission() == [job.pk]
    yield job
    executor.stop(job.pk)


def _settle(executor, job: Job) -> Job:
    settle_running_jobs(executor, on_ended=executor.stop)
    job.refresh_from_db()
    return job


def _wait(page, executor, job: Job, until, what: str, timeout: float = 240) -> Job:
    """Settle the job between looks, as the observe task does, until `until(job)`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = _settle(executor, job)
        if until(job):
            return job
        page.wait_for_timeout(500)
    pytest.fail(f"job {job.pk}: {what} did not happen in {timeout} s ({job.status})")


def _points(page, chart: str) -> int:
    return int(page.get_by_test_id(chart).get_attribute("data-points") or 0)


def test_a_running_job_is_watched_live_and_its_record_stays_after_it_ended(
    page, executor, launched, alice, tmp_path
):
    job = launched
    log_in(page, "alice", "alice-password")
    page.wait_for_url("**/jobs/")

    # progress on the list, as soon as the trainer reported some
    job = _wait(page, executor, job, lambda j: (j.progress or 0) > 0, "a first report")
    page.goto("/jobs/")
    row = page.get_by_test_id("job-table").get_by_role("row", name=re.compile("watched-run"))
    expect(row.get_by_test_id("progress-text")).to_contain_text("%")

    # the monitoring tab fills while the job runs, by itself
    page.goto(f"/jobs/{job.pk}/?tab=monitoring")
    monitoring = page.get_by_test_id("monitoring")
    expect(monitoring).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("chart-loss").locator("canvas")).to_have_count(1)
    expect(page.get_by_test_id("progress")).to_be_visible()
    first = _points(page, "chart-loss")
    job = _wait(
        page,
        executor,
        job,
        # the open page asks again by itself; its last ask, once the job ended, counts too
        lambda j: _points(page, "chart-loss") > first,
        "a live update of the loss chart",
    )
    assert _points(page, "chart-loss") > first, "the chart did not grow while the job ran"
    expect(page.get_by_test_id("chart-cpu").locator("canvas")).to_have_count(1)
    expect(page.get_by_test_id("chart-memory").locator("canvas")).to_have_count(1)
    page.screenshot(path=str(tmp_path / "monitoring-live.png"), full_page=True)

    job = _wait(page, executor, job, lambda j: j.status != JobStatus.RUNNING, "the end")
    assert job.status == JobStatus.SUCCEEDED, job.status_reason
    expect(monitoring).to_have_attribute("data-state", "ended", timeout=20_000)
    loss = page.get_by_test_id("chart-loss")
    assert "Validation loss" in (loss.get_attribute("data-series") or "")
    assert _points(page, "chart-loss") >= 40
    assert _points(page, "chart-network") >= 1  # rates need two samples
    # a CPU-only job reports no device use, and the chart says so
    expect(page.get_by_test_id("chart-device-util").locator(".empty")).to_be_visible()
    expect(page.get_by_test_id("progress-text")).to_have_text("100%")

    page.select_option("#monitor-range", "15m")
    expect(page).to_have_url(re.compile(r"range=15m"))
    assert _points(page, "chart-loss") >= 40

    # the logs and events outlive the run
    page.goto(f"/jobs/{job.pk}/?tab=logs")
    expect(page.get_by_test_id("log-chunk").first).to_contain_text("jingtiao: succeeded")
    with page.expect_download() as downloading:
        page.get_by_test_id("log-download").click()
    downloaded = downloading.value.path().read_text()
    assert "jingtiao: succeeded" in downloaded and "step 1" in downloaded
    page.goto(f"/jobs/{job.pk}/?tab=events")
    events = page.get_by_test_id("all-events")
    expect(events).to_contain_text("worker 0 started as process")
    expect(events).to_contain_text("Status changed: Running → Succeeded")

    # the same tab in 简体中文
    with page.expect_navigation():
        page.select_option("#language-select", "zh-hans")
    page.goto(f"/jobs/{job.pk}/?tab=monitoring")
    expect(page.get_by_test_id("chart-loss").locator("figcaption")).to_have_text("损失")
    expect(page.locator("#monitor-range option:checked")).to_have_text("整个运行")
    expect(monitoring).to_have_attribute("data-state", "ended")
    assert "验证损失" in (page.get_by_test_id("chart-loss").get_attribute("data-series") or "")
    page.screenshot(path=str(tmp_path / "monitoring-zh.png"), full_page=True)


def test_the_charts_axes_read_as_a_person_would_write_them(page, project, alice):
    """Issue 19, item 9: one resource sample gave a time axis from 2027 to 2029, steps
    had ticks at 1.2 and 1.4, one memory axis said "576 MiB" twice, and the axes' times
    were in English whatever the page's language."""
    from django.utils import timezone

    from finetune.models import MetricPoint, ResourceSample
    from finetune.states import transition
    from tests import factories

    job = factories.job(project, alice, name="charted")
    transition(job, JobStatus.RUNNING)
    now = timezone.now()
    for step in range(1, 4):
        MetricPoint.objects.create(
            job=job, worker="local-1-0", time=now, step=step, loss=3.0 / step
        )
    # one moment sampled, on two workers whose memory differs by a fraction of a MiB
    for worker, used in (("local-1-0", 604_000_000), ("local-1-1", 604_300_000)):
        ResourceSample.objects.create(job=job, worker=worker, time=now, memory_bytes=used)
    log_in(page, "alice", "alice-password", language="zh-hans")
    page.goto(f"/jobs/{job.pk}/?tab=monitoring")

    loss = page.get_by_test_id("chart-loss")
    expect(loss).to_have_attribute("data-x-ticks", re.compile(r"\d"))
    steps = loss.get_attribute("data-x-ticks").split("|")
    assert steps and all(re.fullmatch(r"\d+", tick) for tick in steps), steps
    memory = page.get_by_test_id("chart-memory")
    expect(memory).to_have_attribute("data-y-ticks", re.compile("MiB"))
    labels = memory.get_attribute("data-y-ticks").split("|")
    assert len(labels) == len(set(labels)), labels
    times = memory.get_attribute("data-x-ticks").split("|")
    # the time of today, not a span of years nor "7:52am"; two minutes: to the second
    assert all(re.fullmatch(r"\d{2}:\d{2}:\d{2}", tick) for tick in times), times
    assert len(times) == len(set(times)), times


def test_a_text_to_image_job_shows_its_sample_images_while_it_trains(
    page, executor, project, alice
):
    job = queued_t2i_job(
        project,
        alice,
        executor,
        parameters={
            "max_steps": 30,
            "batch_size": 4,
            "learning_rate": 1e-2,
            "logging_steps": 1,
            "eval_strategy": "steps",
            "eval_steps": 10,
            "validation_prompt": "a red square",
        },
    )
    assert admission.run_admission() == [job.pk]
    try:
        log_in(page, "alice", "alice-password", language="zh-hans")
        page.goto(f"/jobs/{job.pk}/?tab=monitoring")
        samples = page.get_by_test_id("samples")
        expect(samples).to_contain_text("示例图片")
        grid = page.get_by_test_id("sample-grid")
        # the first appears while the job still runs, the rest as it goes on
        expect(grid.locator("figure").first).to_contain_text("第 10 步", timeout=240_000)
        job = settled(executor, job)
        assert job.status == JobStatus.SUCCEEDED, job.status_reason
        # and, once it ended, the saved adapter's own
        # the open tab asks every 5 s: its next ask, after the end, brings the rest
        expect(grid.locator("figcaption")).to_have_text(
            ["第 10 步", "第 20 步", "第 30 步", "保存的适配器"], timeout=20_000
        )
        expect(page.locator(".page-header [data-testid=status]")).to_have_text(
            "成功", timeout=20_000
        )
        # the last one may have been put in the page a moment ago: wait until each has loaded
        # (or failed to: a broken image is complete with no width, and fails below)
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-testid=sample-grid] img')]"
            ".every(i => i.complete)"
        )
        widths = grid.locator("img").evaluate_all("images => images.map(i => i.naturalWidth)")
        assert widths == [32, 32, 32, 32]  # real images, served from the job's output
    finally:
        executor.stop(job.pk)
