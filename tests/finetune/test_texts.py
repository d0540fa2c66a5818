"""Issue 19, item 8: what the platform writes for later readers (status reasons,
events) is said in each reader's language, while the English text stays for logs,
the admin's search and scripts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext_noop

from finetune import texts
from finetune.models import Job, JobEvent, JobStatus
from finetune.services.jobs import change_duration, change_priority
from finetune.states import transition
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_said_text_is_english_as_written_and_chinese_when_read_so():
    cause = texts.say(gettext_noop("Its workers were lost (%(reason)s)"), reason="evicted")
    said = texts.say(gettext_noop("%(cause)s; back in the queue at its place."), cause=cause)

    assert str(said) == "Its workers were lost (evicted); back in the queue at its place."
    stored = said.data()
    with translation.override("zh-hans"):
        shown = texts.render(stored, str(said))
        assert str(said).startswith("Its workers")  # what is written is always English
    assert "evicted" in shown and "Its workers" not in shown
    # a row written before, or a trainer's own words: shown as written
    assert texts.render(None, "worker 0 exited with code 1") == "worker 0 exited with code 1"
    assert texts.render({"msgid": 3}, "as written") == "as written"


def test_durations_and_choices_are_worded_by_the_reader():
    said = texts.say(
        gettext_noop("Duration changed from %(old)s to %(new)s"),
        old=texts.duration(timedelta(hours=2)),
        new=texts.duration(timedelta(days=2)),
    )
    assert str(said).replace("\xa0", " ") == "Duration changed from 2 hours to 2 days"
    with translation.override("zh-hans"):
        chinese = texts.render(said.data())
    assert "2" in chinese and "hours" not in chinese and "days" not in chinese
    priority = texts.say(
        gettext_noop("Priority changed from %(old)s to %(new)s"),
        old=texts.Choice("priority", 20),
        new=texts.Choice("priority", 40),
    )
    with translation.override("zh-hans"):
        assert "Urgent" not in texts.render(priority.data())


def test_the_job_page_says_the_reason_and_events_in_the_readers_language(client, project, alice):
    job = factories.job(project, alice, name="said")
    transition(
        job,
        JobStatus.RUNNING,
        reason=texts.say(gettext_noop("admitted on %(nodes)s"), nodes="node-1"),
    )
    change_duration(alice, job, timedelta(hours=48))
    change_priority(alice, job, 40)
    job = Job.objects.get(pk=job.pk)
    assert job.status_reason == "admitted on node-1"  # English, for logs and scripts
    assert JobEvent.objects.filter(job=job, message__startswith="Duration changed").exists()

    client.force_login(alice)
    client.cookies["django_language"] = "zh-hans"
    with translation.override("zh-hans"):
        page = client.get(reverse("finetune:job_detail", args=[job.pk])).content.decode()
    assert "已调度到 node-1" in page
    assert "admitted on" not in page
    assert "Duration changed" not in page and "Priority changed" not in page


def test_a_workers_failure_is_said_in_the_readers_words_with_the_logs_own():
    from scheduler.executors.base import failure_detail
    from scheduler.executors.local import _exit_reason

    reason, _excerpt = failure_detail(_exit_reason(1, 3), "jingtiao: failed: ValueError: bad row")
    assert reason == "worker 1 exited with code 3: ValueError: bad row"  # as stored
    with translation.override("zh-hans"):
        chinese = texts.render(reason.data())
    assert chinese.endswith("ValueError: bad row") and "exited with code" not in chinese


def test_the_local_executors_events_read_in_the_readers_language():
    """The events tab said "Normal Started" / "Warning Exited" on Chinese pages; a
    cluster's own reasons (FailedScheduling) are names, kept as they are."""
    from finetune.views.logs import _event_word

    with translation.override("zh-hans"):
        assert [_event_word(w) for w in ("Normal", "Started", "Warning", "Exited")] == [
            "正常",
            "已启动",
            "警告",
            "已退出",
        ]
        assert _event_word("FailedScheduling") == "FailedScheduling"
