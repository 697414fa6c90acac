"""The API docs in a real browser: Swagger UI renders the endpoints from self-hosted files only, under
the portal's Content-Security-Policy (the ``page`` fixture fails on any violation), and "Try it out"
works with an API key. Screenshot: test-artifacts/browser/api-docs.png."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Request, expect

from accounts import services as account_services
from tests.conftest import Tenant

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_docs_render_the_endpoints_offline_and_try_it_out_works(
    page: Page, live_server: Any, tenant: Tenant, shot: Any
) -> None:
    _key, raw = account_services.create_api_key(tenant.account_a, "docs", tenant.owner)
    hosts: set[str] = set()

    def on_request(request: Request) -> None:
        hosts.add(urlsplit(request.url).netloc)

    page.on("request", on_request)

    # the page and its operations
    page.goto(live_server.url + "/api/v1/docs")
    expect(page.get_by_text("XES Portal API").first).to_be_visible()
    for path in ("/api/v1/messages", "/api/v1/messages/{id}", "/api/v1/account"):
        expect(page.locator(f".opblock-summary-path[data-path='{path}']")).to_be_visible()
    expect(page.get_by_text("Send a triggered e-mail")).to_be_visible()
    shot(page, "api-docs")

    # authorise with a key and call GET /api/v1/account from the page
    page.get_by_role("button", name="Authorize").first.click()
    page.locator(".modal-ux input[type=text]").fill(raw)
    page.locator(".modal-ux .auth-btn-wrapper button.authorize").click()
    page.locator(".modal-ux .auth-btn-wrapper button.btn-done").click()
    page.locator(".opblock-summary-path[data-path='/api/v1/account']").click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    expect(page.locator(".live-responses-table tbody .response-col_status").first).to_have_text("200")
    expect(page.locator(".live-responses-table")).to_contain_text("Alpha account")

    # nothing was fetched from anywhere but the portal
    assert hosts == {urlsplit(live_server.url).netloc}
