"""A member opens a trained version in Chromium, in 简体中文, merges nothing, and chats
with it: the answer streams in beside the base model's, and the next turn follows."""

from __future__ import annotations

import threading

import pytest
from playwright.sync_api import expect

from accounts.models import Access
from finetune.models import PlaygroundRun
from finetune.services import playground
from tests import factories
from tests.e2e.conftest import log_in
from tests.finetune.test_model_versions import _tiny_version

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


@pytest.fixture
def worker(monkeypatch):
    """The inference worker: each question queued is answered in a thread of its own, by
    the same code the worker's task runs."""
    from django.db import connection

    answered: list[int] = []

    def answer(run_id: int) -> None:
        try:
            playground.answer(run_id)
            answered.append(run_id)
        finally:
            connection.close()

    monkeypatch.setattr(playground, "_models", None)
    monkeypatch.setattr(
        playground,
        "_enqueue",
        lambda run_id: threading.Thread(target=answer, args=(run_id,)).start(),
    )
    return answered


def test_a_member_chats_with_a_version_beside_its_base_model_in_chinese(
    page, project, alice, bob, worker
):
    repo = factories.model_repo(project, alice, Access.READ_ONLY, name="客服助手")
    version = _tiny_version(repo, warm=True)
    log_in(page, "bob", "bob-password", "zh-hans")
    page.goto(f"/repos/{repo.pk}/versions/{version.number}/")
    expect(page.get_by_test_id("version-files")).to_contain_text("adapter_model.safetensors")
    expect(page.get_by_test_id("export-refusal")).to_have_count(0)
    page.get_by_test_id("version-playground").click()
    expect(page.locator("h1")).to_contain_text("试用")
    expect(page.get_by_test_id("playground")).to_contain_text("基础模型（tiny-llama）")  # noqa: RUF001
    page.fill("[data-testid=prompt]", "你好，请介绍一下自己")  # noqa: RUF001
    page.fill("input[name=temperature]", "0")
    page.get_by_test_id("send").click()
    mine = page.get_by_test_id("answers-version").locator(".playground-turn.assistant")
    theirs = page.get_by_test_id("answers-base").locator(".playground-turn.assistant")
    expect(page.get_by_test_id("send")).to_be_enabled(timeout=30_000)  # the answer is in
    expect(page.get_by_test_id("playground-state")).to_have_text("")
    expect(mine).not_to_have_text("")
    expect(theirs).not_to_have_text("")
    expect(page.get_by_test_id("answers-version").locator(".playground-turn.user")).to_have_text(
        "你好，请介绍一下自己"  # noqa: RUF001
    )
    assert mine.inner_text() != theirs.inner_text()
    # the next turn, without the base model: its side gets no new answer
    page.fill("[data-testid=prompt]", "然后呢？")  # noqa: RUF001
    page.uncheck("input[name=compare]")
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("send")).to_be_enabled(timeout=30_000)
    expect(mine).to_have_count(2)
    expect(mine.nth(1)).not_to_have_text("")
    expect(theirs).to_have_count(1)
    assert PlaygroundRun.objects.filter(status="done").count() == 2
    # a message past the limit is refused in the page's language
    page.fill("[data-testid=prompt]", "字" * 9000)
    page.get_by_test_id("send").click()
    expect(page.get_by_test_id("playground-state")).to_contain_text("最多可容纳 8000 个")
    page.screenshot(path="/tmp/playground-zh.png", full_page=True)
