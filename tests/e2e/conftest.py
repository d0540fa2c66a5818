"""A real headless Chromium (Debian's package) driven by Playwright."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    path = os.environ.get("JINGTIAO_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail(
            "The browser tests need Chromium: apt-get install chromium, "
            "or set JINGTIAO_CHROMIUM to its path. bin/test installs it."
        )
    return path


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server, transactional_db, django_db_serialized_rollback):
    """A page of a fresh context; every test also checks that nothing it showed broke
    the Content-Security-Policy (an inline script or style, an eval, another origin).

    Serialized rollback, as every transactional test here has: a transactional test
    without it leaves the content types and permissions re-created after its flush, and
    the next one with it then fails to restore them (a unique key), whatever the order."""
    context = browser.new_context(base_url=live_server.url, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    violations: list[str] = []
    page.csp_violations = violations  # a test that provokes one on purpose clears it
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield page
    context.close()
    assert violations == [], "the pages broke the Content-Security-Policy"


def log_in(page, username: str, password: str, language: str = "") -> None:
    """Log in; with `language` ("zh-hans"), also switch the console to it, as a user
    does with the switch at the top of the list."""
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit].primary")
    if language:
        page.wait_for_url("**/jobs/")
        with page.expect_navigation():
            page.select_option("#language-select", language)
