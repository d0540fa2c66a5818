"""日志 (F7.2): the log tab tails each worker's log from the executor, page by page."""

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
    from scheduler.executors.base import Phase

    job = running_job(parameters={"behaviour": "chatty"})
    launch_job(job, placement(device_type="none", devices_per_node=0))
    wait_for(job.pk, {Phase.SUCCEEDED})
    from scheduler.tasks import observe_running_jobs

    observe_running_jobs()
    client.force_login(alice)
    url, lines, pages = reverse("finetune:job_logs", args=[job.pk]), 0, 0
    while url:
        page = client.get(url).content.decode()
        lines += len(re.findall(r"^line \d{5} ", page, re.M))
        pages += 1
        url = _next_url(page)
        assert pages < 50
    assert lines == 20000 and pages > 1


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
    page = client.get(reverse("finetune:job_detail", args=[job.pk]), {"tab": "events"})
    text = page.content.decode()
    started = text.index("worker 0 started as process")
    exited = text.index("Warning Exited")
    admitted = text.index("Status changed")
    assert exited < started < admitted  # newest first: exit, start, then the admission
    assert "exited with code 3" in text
