"""日志 (F7.2): the log tab tails each worker's log from the executor, page by page."""

import json
import re

import pytest
from django.urls import reverse

from accounts.models import Access
from scheduler.launching import launch_job
from tests import factories
from tests.scheduler.conftest import placement
from tests.scheduler.test_executor_local import release, wait_for, wait_for_output

pytestmark = pytest.mark.django_db


def _next_url(page: str) -> str | None:
    found = re.search(r'data-testid="log-tail" hx-get="([^"]+)"', page)
    return found.group(1).replace("&amp;", "&") if found else None


def test_the_log_tab_shows_a_running_jobs_log_and_asks_for_more(
    client, fake_trainer, running_job, alice
):
    job = running_job(parameters={"behaviour": "wait"})
    launch_job(job, placement(device_type="none", devices_per_node=0))
    wait_for_output(job.pk, "rank 0 of 1")
    client.force_login(alice)
    page = client.get(reverse("finetune:job_detail", args=[job.pk]), {"tab": "logs"})
    text = page.content.decode()
    assert 'data-worker="0"' in text and "rank 0 of 1" in text
    follow = _next_url(text)
    assert follow and follow.startswith(reverse("finetune:job_logs", args=[job.pk]))
    # nothing new yet: the next page is empty but still polls
    again = client.get(follow).content.decode()
    assert "rank 0 of 1" not in again and _next_url(again)
    release(job)


def test_a_long_log_arrives_in_pages_and_the_tail_stops_at_the_end(
    client, fake_trainer, running_job, alice
):
    job = _ended(running_job, "chatty")
    client.force_login(alice)
    url, lines, pages = reverse("finetune:job_logs", args=[job.pk]), 0, 0
    while url:
        page = client.get(url).content.decode()
        lines += len(re.findall(r"^line \d{5} ", page, re.M))
        pages += 1
        url = _next_url(page)
        assert pages < 50
    assert lines == 20000 and pages > 1


@pytest.mark.parametrize("since", ["garbage", "[1, 2]", '{"zero": 5}', '{"0": [1]}'])
def test_a_cursor_that_no_page_gave_is_refused_in_words(client, project, alice, since):
    job = factories.job(project, alice)
    client.force_login(alice)
    response = client.get(reverse("finetune:job_logs", args=[job.pk]), {"since": since})
    assert response.status_code == 400 and b"earlier page" in response.content


def test_only_those_who_may_view_the_job_see_its_log(client, project, alice, bob, charlie):
    job = factories.job(project, alice, level=Access.NONE)
    url = reverse("finetune:job_logs", args=[job.pk])
    client.force_login(charlie)
    assert client.get(url).status_code == 404
    client.force_login(bob)
    assert client.get(url).status_code == 404
    client.force_login(alice)
    assert client.get(url).status_code == 200


def test_the_events_tab_shows_platform_and_cluster_events_newest_first(
    client, fake_trainer, running_job, alice
):
    from scheduler.executors.base import Phase

    job = running_job(parameters={"behaviour": "fail"})
    launch_job(job, placement(device_type="none", devices_per_node=0))
    wait_for(job.pk, {Phase.FAILED})
    client.force_login(alice)
    tab = client.get(reverse("finetune:job_detail", args=[job.pk]), {"tab": "events"})
    events = reverse("finetune:job_events", args=[job.pk])
    assert f'hx-get="{events}"' in tab.content.decode()  # asked after the page
    assert "worker 0 started as process" not in tab.content.decode()
    text = client.get(events).content.decode()
    started = text.index("worker 0 started as process")
    exited = text.index("Warning Exited")
    admitted = text.index("Status changed: Queued → Running")
    assert exited < started < admitted  # newest first: exit, start, then the admission
    assert "exited with code 3" in text


def test_the_events_tab_still_shows_the_platforms_events_when_the_cluster_cannot_answer(
    client, local_backend, running_job, alice, monkeypatch
):
    from scheduler.executors import get_executor
    from scheduler.executors.base import ExecutorError

    job = running_job()

    def unreachable(job_id):
        raise ExecutorError("kubernetes list events: HTTP 503 Service Unavailable", transient=True)

    monkeypatch.setattr(get_executor(), "events", unreachable)
    client.force_login(alice)
    page = client.get(reverse("finetune:job_events", args=[job.pk]))
    text = page.content.decode()
    assert page.status_code == 200
    assert "The cluster&#x27;s events are not available right now" in text and "HTTP 503" in text
    assert "Status changed: Queued → Running" in text


def _ended(running_job, behaviour: str):
    """A one-worker job that ran `behaviour` to its end and was settled as observe does."""
    from scheduler.executors.base import Phase
    from scheduler.tasks import observe_running_jobs

    job = running_job(parameters={"behaviour": behaviour})
    launch_job(job, placement(device_type="none", devices_per_node=0))
    wait_for(job.pk, {Phase.SUCCEEDED, Phase.FAILED})
    observe_running_jobs()
    job.refresh_from_db()
    return job


def _tab(client, job, **query):
    url = reverse("finetune:job_detail", args=[job.pk])
    return client.get(url, {"tab": "logs", **query}).content.decode()


def test_the_tab_opens_on_the_end_of_a_long_log_and_can_read_it_from_the_start(
    client, fake_trainer, running_job, alice
):
    job = _ended(running_job, "chatty")
    client.force_login(alice)

    end = _tab(client, job)
    assert "line 19999 " in end and "line 00000 " not in end
    assert 'data-testid="log-skipped"' in end and 'data-testid="log-download"' in end
    assert not re.search(r"^line \d{5} x+\n(?!line|</pre>)", end, re.M)  # whole lines only

    start = _tab(client, job, **{"from": "start"})
    assert "line 00000 " in start and "line 19999 " not in start
    # the job ended: the next page comes on a click, not by itself
    assert 'hx-trigger="click"' in start and "every 2s" not in start


def test_each_worker_has_its_own_log_and_download(client, fake_trainer, running_job, alice):
    from scheduler.executors.base import Phase

    job = running_job(node_count=2, parameters={"behaviour": "succeed"})
    launch_job(job, placement(("node-a", "node-b"), device_type="none", devices_per_node=0))
    wait_for(job.pk, {Phase.SUCCEEDED, Phase.FAILED})  # both ranks write one output: one fails
    client.force_login(alice)

    first, second = _tab(client, job), _tab(client, job, worker="1")
    assert "rank 0 of 2" in first and "rank 1 of 2" not in first
    assert "rank 1 of 2" in second and 'aria-current="page">worker 1' in second

    download = client.get(reverse("finetune:job_log_download", args=[job.pk, 1]))
    assert download.status_code == 200 and download.streaming
    assert download["Content-Disposition"] == f'attachment; filename="job-{job.pk}-worker-1.log"'
    from finetune.storage import job_dir

    assert b"".join(download.streaming_content) == (job_dir(job.pk) / "worker-1.log").read_bytes()
    assert client.get(reverse("finetune:job_log_download", args=[job.pk, 5])).status_code == 404


def test_only_those_who_may_view_the_job_download_its_log(client, project, alice, bob):
    job = factories.job(project, alice, level=Access.NONE)
    url = reverse("finetune:job_log_download", args=[job.pk, 0])
    client.force_login(bob)
    assert client.get(url).status_code == 404


def test_a_1_gib_log_is_paged_and_downloaded_without_being_read_whole(
    client, fake_trainer, running_job, alice
):
    import tracemalloc

    from finetune.storage import job_dir
    from scheduler.executors.base import Phase
    from scheduler.executors.logfiles import BLOCK_BYTES, PAGE_BYTES

    job = running_job(parameters={"behaviour": "succeed"})
    launch_job(job, placement(device_type="none", devices_per_node=0))
    wait_for(job.pk, {Phase.SUCCEEDED})
    log = job_dir(job.pk) / "worker-0.log"
    line = b"step 000000 loss 1.2345 " + b"x" * 999 + b"\n"  # 1 KiB a line
    block = line * 1024
    gib = 1024**3
    try:
        with open(log, "ab") as handle:
            for _ in range(gib // len(block)):
                handle.write(block)
            handle.write(b"the very last line\n")
        assert log.stat().st_size > gib
        client.force_login(alice)

        tracemalloc.start()
        try:
            end = _tab(client, job)
            middle = client.get(
                reverse("finetune:job_logs", args=[job.pk]), {"since": json.dumps({"0": gib // 2})}
            ).content.decode()
            download = client.get(reverse("finetune:job_log_download", args=[job.pk, 0]))
            received = 0
            for piece in download.streaming_content:
                assert len(piece) <= BLOCK_BYTES
                received += len(piece)
            _now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        log.unlink()

    assert "the very last line" in end and 'data-testid="log-skipped"' in end
    assert middle.count("step 000000") in range(PAGE_BYTES // 1024 - 2, PAGE_BYTES // 1024 + 1)
    assert received > gib
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB of Python memory"
