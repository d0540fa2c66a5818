"""Issue 19, item 8: the 403, 404 and 500 pages are the platform's own, in the reader's
language, not Django's bare ones (the 503 of a database that does not answer:
tests/test_error_pages.py)."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Access
from tests import factories

pytestmark = pytest.mark.django_db


def _words(page: str) -> list[str]:
    """The ASCII words a reader sees (tags, attributes and the brand aside)."""
    body = re.sub(r"<[^>]+>", " ", page.split("<body>", 1)[1])
    return [w for w in re.findall(r"[A-Za-z]{2,}", body) if w != "Jingtiao"]


def test_a_job_of_another_project_or_none_is_a_page_not_found_in_chinese(client, bob):
    client.force_login(bob)
    client.cookies["django_language"] = "zh-hans"
    response = client.get(reverse("finetune:job_detail", args=[987654]))
    assert response.status_code == 404
    page = response.content.decode()
    assert "找不到页面" in page and "返回控制台" in page
    assert _words(page) == []
    client.cookies["django_language"] = "en"
    assert "Page not found" in client.get("/jobs/987654/").content.decode()


def test_an_action_the_access_level_forbids_is_a_page_saying_so(client, project, alice, bob):
    job = factories.job(project, alice, level=Access.READ_ONLY)
    client.force_login(bob)
    client.cookies["django_language"] = "zh-hans"
    response = client.get(reverse("finetune:job_stop", args=[job.pk]))
    assert response.status_code == 403
    page = response.content.decode()
    assert "无权访问" in page and _words(page) == []


def test_a_server_error_is_a_page_that_says_nothing_was_lost(alice, monkeypatch):
    from finetune.views import jobs

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(jobs.JobListView, "get", broken)
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    client.cookies["django_language"] = "zh-hans"
    response = client.get(reverse("finetune:job_list"))
    assert response.status_code == 500
    page = response.content.decode()
    assert "出错了" in page and _words(page) == []
