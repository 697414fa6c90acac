"""E-mails to the owners: at 80% and 100% of the pool (once each per pool) and when a term expires."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from accounts.models import Organisation
from plans import services
from plans.models import CreditAccount, Plan, Subscription
from tests.conftest import Tenant
from tests.plans.conftest import T0, grant, utc


def spend(organisation: Organisation, emails: int, at: Any = T0) -> None:
    services.consume(services.reserve(organisation, emails, at=at), emails, at=at)


def html(message: Any) -> str:
    (alternative,) = message.alternatives
    assert alternative.mimetype == "text/html"
    return str(alternative.content)


@pytest.fixture
def small(tenant: Tenant, small_plan: Callable[..., Plan]) -> Subscription:
    return grant(tenant.organisation, small_plan(1_000, "10.00"), T0)


def test_owners_are_told_at_80_percent_of_the_pool_once(
    tenant: Tenant, small: Subscription, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    org = tenant.organisation
    with django_capture_on_commit_callbacks(execute=True):
        spend(org, 799)
    assert mailoutbox == []

    with django_capture_on_commit_callbacks(execute=True):
        spend(org, 1)
        spend(org, 150)

    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == ["owner@acme.example"]  # owners only, not admins or members
    assert message.subject == "Acme Agency: 80% of your included e-mails are used"
    text = "Your organisation Acme Agency has used 800 of the 1,000 e-mails included in its current plans (80%)."
    assert text in message.body
    assert text in html(message)
    assert "Consider ordering more volume" in message.body


def test_owners_are_told_at_100_percent_once_and_not_again_for_overage(
    tenant: Tenant, small: Subscription, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    org = tenant.organisation
    with django_capture_on_commit_callbacks(execute=True):
        spend(org, 850)
        spend(org, 150)
        spend(org, 500)  # overage

    assert [m.subject for m in mailoutbox] == [
        "Acme Agency: 80% of your included e-mails are used",
        "Acme Agency: all included e-mails are used",
    ]
    assert "has used 1,000 of the 1,000 e-mails" in mailoutbox[1].body
    assert "Further e-mails are sent as overage" in html(mailoutbox[1])


def test_a_jump_past_both_levels_sends_only_the_100_percent_mail(
    tenant: Tenant, small: Subscription, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        spend(tenant.organisation, 1_200)

    assert [m.subject for m in mailoutbox] == ["Acme Agency: all included e-mails are used"]


def test_reserved_credits_alone_do_not_trigger_the_mail(
    tenant: Tenant, small: Subscription, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        r = services.reserve(tenant.organisation, 900, at=T0)
        services.release(r, at=T0)

    assert mailoutbox == []


def test_the_levels_count_adjustments_to_the_pool(
    tenant: Tenant, small: Subscription, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    services.adjust_credits(small, 1_000, "Goodwill", by=tenant.owner)  # the pool holds 2,000
    with django_capture_on_commit_callbacks(execute=True):
        spend(tenant.organisation, 1_599)
    assert mailoutbox == []

    with django_capture_on_commit_callbacks(execute=True):
        spend(tenant.organisation, 1)

    assert len(mailoutbox) == 1
    assert "has used 1,600 of the 2,000 e-mails" in mailoutbox[0].body


def test_a_new_pool_is_announced_afresh(
    tenant: Tenant,
    small: Subscription,
    small_plan: Callable[..., Plan],
    django_capture_on_commit_callbacks: Any,
    mailoutbox: list[Any],
) -> None:
    org = tenant.organisation
    with django_capture_on_commit_callbacks(execute=True):
        spend(org, 1_000)
    assert len(mailoutbox) == 1  # 100%

    # another plan joins the pool: 1,000 of 2,000 used
    grant(org, small_plan(1_000, "10.00", code="second"), T0)
    with django_capture_on_commit_callbacks(execute=True):
        spend(org, 599)
    assert len(mailoutbox) == 1
    with django_capture_on_commit_callbacks(execute=True):
        spend(org, 1)

    assert len(mailoutbox) == 2
    assert "has used 1,600 of the 2,000 e-mails" in mailoutbox[1].body
    account = CreditAccount.objects.get(organisation=org)
    assert account.notified_level == 80


def test_each_organisation_has_its_own_levels(
    tenant: Tenant,
    small: Subscription,
    outsider: Any,
    small_plan: Callable[..., Plan],
    django_capture_on_commit_callbacks: Any,
    mailoutbox: list[Any],
) -> None:
    other = outsider.memberships.get().organisation
    grant(other, small_plan(1_000, "10.00", code="other"), T0)
    with django_capture_on_commit_callbacks(execute=True):
        spend(tenant.organisation, 800)
        spend(other, 800)

    assert sorted(m.to[0] for m in mailoutbox) == ["owner@acme.example", "owner@other.example"]


def test_owners_are_told_when_a_term_expires(
    tenant: Tenant, plan: Callable[[str], Plan], django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    org = tenant.organisation
    term = grant(org, plan("STANDARD"), utc(2026, 3, 1))
    spend(org, 250_000, at=utc(2026, 4, 1))

    with django_capture_on_commit_callbacks(execute=True):
        services.expire_due_terms(at=term.ends_at)
        services.expire_due_terms(at=term.ends_at)  # idempotent: one mail

    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == ["owner@acme.example"]
    assert message.subject == "Acme Agency: your Standard term has ended"
    for part in (message.body, html(message)):
        assert "The Standard term of Acme Agency" in part
        assert "750,000 unused e-mails expired; included e-mails do not roll over." in part


def test_owners_are_told_when_starter_ends_early(
    tenant: Tenant, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    org = tenant.organisation
    org.is_cloud_emedia_customer = True
    services.sync_starter(org, at=T0)
    org.is_cloud_emedia_customer = False

    with django_capture_on_commit_callbacks(execute=True):
        services.sync_starter(org, at=utc(2026, 4, 1))

    assert [m.subject for m in mailoutbox] == ["Acme Agency: your Starter term has ended"]
    assert "500,000 unused e-mails expired" in mailoutbox[0].body


def test_no_mail_leaves_when_the_transaction_is_rolled_back(
    tenant: Tenant, small: Subscription, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        spend(tenant.organisation, 1_000)

    # the mail is only sent by the commit hook
    assert mailoutbox == []
    assert len(callbacks) == 1
