"""The API's pages in a real browser: a member makes a token in 简体中文, copies it once,
a script uses it, the member revokes it; the documentation page works under the CSP."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.e2e.conftest import log_in

pytestmark = pytest.mark.browser


def _status(url: str, key: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_member_makes_uses_and_revokes_a_token_in_chinese(page, live_server, project, alice):
    log_in(page, "alice", "alice-password", "zh-hans")
    page.click("text=API 令牌")
    page.fill("#id_name", "流水线")
    page.check(f"input[name=projects][value='{project.pk}']")
    page.click("button[type=submit].primary")
    secret = page.locator("[data-testid=token-secret]").inner_text().strip()
    assert secret.startswith("jt_")
    assert "只显示这一次" in page.locator("[data-testid=new-token]").inner_text()
    assert _status(f"{live_server.url}/api/v1/projects/", secret) == 200
    page.goto("/accounts/tokens/")
    assert page.locator("[data-testid=token-secret]").count() == 0
    page.click("[data-testid=revoke]")
    assert "已撤销" in page.locator("[data-testid=token-table]").inner_text()
    assert _status(f"{live_server.url}/api/v1/projects/", secret) == 401


def test_the_documentation_page_lists_the_operations(page, project, alice):
    log_in(page, "alice", "alice-password")
    page.goto("/api/v1/docs/")
    page.wait_for_selector("text=/api/v1/jobs/", timeout=30_000)
    assert page.locator(".opblock").count() > 20
