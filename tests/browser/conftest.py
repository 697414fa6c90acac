"""Browser tests: Playwright drives Debian's Chromium (headless) against pytest-django's live server.

Screenshots go to ``test-artifacts/browser/`` (git-ignored) so that people can look at the pages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core import mail
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

# The local DNS server's fixtures, for the domain wizard's browser test.
from tests.deliverability.conftest import dns_server, dns_zones, local_dns  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts" / "browser"
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def playwright_instance() -> Iterator[Playwright]:
    """Playwright for one test module.

    Its sync API runs an event loop in this thread, and Django then refuses ORM calls from the thread
    (SynchronousOnlyOperation) although nothing here is async; the live server has its own thread.
    DJANGO_ALLOW_ASYNC_UNSAFE lifts that only while Playwright runs: set for the whole session, it would
    leak into later tests (``manage.py check --deploy`` rightly fails on it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        pw = sync_playwright().start()
        yield pw
        pw.stop()


@pytest.fixture(scope="module")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's 'chromium' package (scripts/ensure-chromium.sh)")
    chromium = playwright_instance.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture
def page(
    browser: Browser,
    live_server: Any,
    transactional_db: None,
    settings: Any,
) -> Iterator[Page]:
    """A fresh English browser session per test. Fails the test on Content-Security-Policy violations,
    which is how an inline style or script shows up in a real browser."""
    # Links in our own e-mails point at SITE_URL: make them point at the live server.
    settings.SITE_URL = live_server.url
    # Reduced motion: Bootstrap then opens menus without animation, so screenshots never catch one halfway.
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800}, reduced_motion="reduce")
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    csp_errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            csp_errors.append(f"{tab.url}: {message.text}")

    tab.on("console", on_console)
    yield tab
    context.close()
    assert not csp_errors, "Content-Security-Policy violations:\n" + "\n".join(csp_errors)


@pytest.fixture
def shot() -> Any:
    """``shot(page, "01-signup")`` saves a full-page screenshot as test-artifacts/browser/01-signup.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def _shot(tab: Page, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        tab.screenshot(path=str(path), full_page=True)
        return path

    return _shot


@pytest.fixture
def link_from_outbox(live_server: Any) -> Any:
    """The path-and-query of the first link matching ``pattern`` in the newest e-mail, on the live server."""

    def _link(pattern: str) -> str:
        assert mail.outbox, "no e-mail was sent"
        body = str(mail.outbox[-1].body)
        match = re.search(rf"https?://\S*{pattern}\S*", body)
        assert match, f"no link matching {pattern!r} in:\n{body}"
        url = urlsplit(match.group(0))
        return live_server.url + url.path + (f"?{url.query}" if url.query else "")

    return _link


def open_setup_page(page: Page, name: str) -> None:
    """Follow a link of the navigation's "Setup" menu (clients, accounts, senders, API keys)."""
    page.get_by_test_id("setup-menu").click()
    page.get_by_role("navigation", name="Main navigation").get_by_role("link", name=name).click()
