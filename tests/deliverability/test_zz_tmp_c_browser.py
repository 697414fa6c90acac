from __future__ import annotations
from datetime import date, timedelta
from typing import Any
import pytest
from playwright.sync_api import Page, expect
from deliverability import warmup
from deliverability.models import Domain
from tests.browser.test_newcomer import log_in
from tests.conftest import Tenant
from tests.browser.conftest import *  # noqa

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

def test_shot(page: Page, live_server: Any, tenant: Tenant, shot: Any) -> None:
    Domain.objects.create(sending_account=tenant.account_a, name="alpha.example", verification_token="t1")
    warmup.assign_ip(tenant.account_a, "192.0.2.10", by=None, starts_on=warmup.today_utc() - timedelta(days=19))
    from tests.factories import PASSWORD; log_in(page, live_server.url, tenant.owner.email, PASSWORD); page.wait_for_timeout(500)
    page.goto(live_server.url + f"/deliverability/accounts/{tenant.account_a.pk}/dedicated-ip/")
    page.wait_for_timeout(800)
    shot(page, "tmp-c-dedicated-ip")
    page.goto(live_server.url + f"/deliverability/accounts/{tenant.account_b.pk}/dedicated-ip/")
    shot(page, "tmp-c-dedicated-ip-empty")
