"""The XES team's back office for dedicated IPs: assigning an IP (provider errors become messages and
change nothing), the read-only pools, editing warm-up caps with validation, and regenerating them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
import time_machine
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client as HttpClient
from django.urls import reverse

from accounts.models import User
from deliverability import warmup
from deliverability.models import DedicatedIp, IpPool, WarmupDay, WarmupSchedule
from deliverability.providers import ProviderError, ensure_setup, provider_for
from tests.conftest import Tenant

ASSIGN = "admin:deliverability_ippool_assign"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def _messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def back_office(staff_user: User, client: HttpClient) -> HttpClient:
    client.force_login(staff_user)
    return client


@pytest.fixture
def schedule(tenant: Tenant) -> WarmupSchedule:
    with time_machine.travel(utc(2026, 3, 10, 9, 0), tick=False):
        warmup.assign_ip(tenant.account_a, "192.0.2.10", by=None)
    return WarmupSchedule.objects.get()


def _schedule_data(schedule: WarmupSchedule, caps: dict[int, int] | None = None) -> dict[str, Any]:
    """The change form of a schedule as the browser posts it, with some caps changed."""
    days = list(schedule.days.order_by("day"))
    data: dict[str, Any] = {
        "starts_on": schedule.starts_on.isoformat(),
        "target_daily_volume": str(schedule.target_daily_volume),
        "days-TOTAL_FORMS": str(len(days)),
        "days-INITIAL_FORMS": str(len(days)),
        "days-MIN_NUM_FORMS": "0",
        "days-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    for i, row in enumerate(days):
        cap = (caps or {}).get(row.day, row.daily_cap)
        data |= {
            f"days-{i}-id": str(row.pk),
            f"days-{i}-schedule": str(schedule.pk),
            f"days-{i}-day": str(row.day),
            f"days-{i}-daily_cap": str(cap),
        }
    return data


# --- pages load, and only for the team ----------------------------------------------------


def test_the_pages_load(back_office: HttpClient, schedule: WarmupSchedule, django_assert_max_num_queries: Any) -> None:
    pool = schedule.pool
    urls = [
        reverse("admin:deliverability_ippool_changelist"),
        reverse("admin:deliverability_ippool_change", args=[pool.pk]),
        reverse(ASSIGN),
        reverse("admin:deliverability_warmupschedule_changelist"),
        reverse("admin:deliverability_warmupschedule_change", args=[schedule.pk]),
    ]
    for url in urls:
        with django_assert_max_num_queries(20):
            response = back_office.get(url)
        assert response.status_code == 200, url
    pool_page = back_office.get(urls[1]).content.decode()
    assert "192.0.2.10" in pool_page
    assert f"{reverse(ASSIGN)}?sending_account={pool.sending_account_id}" in pool_page


def test_customers_do_not_get_in(tenant: Tenant, login: Any, schedule: WarmupSchedule) -> None:
    client = login(tenant.owner)

    for url in (reverse(ASSIGN), reverse("admin:deliverability_warmupschedule_change", args=[schedule.pk])):
        response = client.get(url)
        assert response.status_code == 302
        assert reverse("admin:login") in response["Location"]


def test_pools_are_not_added_or_deleted_by_hand(back_office: HttpClient, schedule: WarmupSchedule) -> None:
    assert back_office.get(reverse("admin:deliverability_ippool_add")).status_code == 403
    assert back_office.get(reverse("admin:deliverability_ippool_delete", args=[schedule.pool_id])).status_code == 403
    assert back_office.get(reverse("admin:deliverability_warmupschedule_add")).status_code == 403


# --- assigning ----------------------------------------------------------------------------


def test_assigning_an_ip_creates_the_pool_and_the_warmup(
    back_office: HttpClient, tenant: Tenant, staff_user: User
) -> None:
    with time_machine.travel(utc(2026, 3, 10, 9, 0), tick=False):
        response = back_office.post(
            reverse(ASSIGN), {"sending_account": tenant.account_a.pk, "address": "192.0.2.10"}, follow=True
        )

    pool = IpPool.objects.get(sending_account=tenant.account_a)
    assert response.redirect_chain[-1][0] == reverse("admin:deliverability_ippool_change", args=[pool.pk])
    ip = DedicatedIp.objects.get()
    assert (ip.pool, ip.address, ip.assigned_by) == (pool, "192.0.2.10", staff_user)
    assert WarmupSchedule.objects.get(pool=pool).starts_on == date(2026, 3, 10)
    assert _messages(response) == [
        f"192.0.2.10 is assigned to Alpha account (pool {pool.name}). "
        "The warm-up is on day 1 of 45; today's cap is 500."
    ]


def test_assigning_with_a_later_start(back_office: HttpClient, tenant: Tenant) -> None:
    with time_machine.travel(utc(2026, 3, 5, 9, 0), tick=False):
        response = back_office.post(
            reverse(ASSIGN),
            {"sending_account": tenant.account_a.pk, "address": "192.0.2.10", "starts_on": "2026-03-10"},
            follow=True,
        )

    assert WarmupSchedule.objects.get().starts_on == date(2026, 3, 10)
    assert "The warm-up starts on 2026-03-10; until then day 1's cap of 500 applies." in _messages(response)[0]


def test_a_provider_error_is_a_message_and_changes_nothing(
    back_office: HttpClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider_class = type(provider_for(ensure_setup(tenant.account_a)))

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ProviderError("The IP 192.0.2.10 is not leased in this AWS account.", code="NotFoundException")

    monkeypatch.setattr(provider_class, "assign_dedicated_ip", refuse)

    response = back_office.post(reverse(ASSIGN), {"sending_account": tenant.account_a.pk, "address": "192.0.2.10"})

    assert response.status_code == 200
    assert _messages(response) == [
        "The provider refused; nothing was changed. The IP 192.0.2.10 is not leased in this AWS account."
    ]
    assert not IpPool.objects.exists()
    assert not DedicatedIp.objects.exists()
    assert not WarmupSchedule.objects.exists()


@pytest.mark.parametrize(
    ("address", "error"),
    [("192.0.2.10", "192.0.2.10 is already assigned to the pool"), ("not-an-ip", "Enter a valid IPv4 or IPv6")],
)
def test_a_taken_or_invalid_address_is_a_form_error(
    back_office: HttpClient, tenant: Tenant, schedule: WarmupSchedule, address: str, error: str
) -> None:
    response = back_office.post(reverse(ASSIGN), {"sending_account": tenant.account_b.pk, "address": address})

    assert response.status_code == 200
    assert error in response.content.decode()
    assert not IpPool.objects.filter(sending_account=tenant.account_b).exists()


def test_the_assign_action_opens_the_form_for_the_pools_account(
    back_office: HttpClient, schedule: WarmupSchedule
) -> None:
    response = back_office.post(
        reverse("admin:deliverability_ippool_changelist"),
        {"action": "assign_another_ip", ACTION_CHECKBOX_NAME: [schedule.pool_id]},
    )

    assert response.status_code == 302
    assert response["Location"] == f"{reverse(ASSIGN)}?sending_account={schedule.pool.sending_account_id}"
    form = back_office.get(response["Location"]).content.decode()
    assert "Alpha account" in form


def test_a_second_ip_through_the_admin_keeps_the_warmup(
    back_office: HttpClient, tenant: Tenant, schedule: WarmupSchedule
) -> None:
    with time_machine.travel(utc(2026, 3, 29, 9, 0), tick=False):
        response = back_office.post(
            reverse(ASSIGN), {"sending_account": tenant.account_a.pk, "address": "192.0.2.11"}, follow=True
        )

    assert DedicatedIp.objects.count() == 2
    assert WarmupSchedule.objects.get().starts_on == date(2026, 3, 10)
    assert "The warm-up is on day 20 of 45; today's cap is 6,300." in _messages(response)[0]


# --- editing and regenerating caps --------------------------------------------------------


def test_the_team_edits_a_cap(back_office: HttpClient, tenant: Tenant, schedule: WarmupSchedule) -> None:
    url = reverse("admin:deliverability_warmupschedule_change", args=[schedule.pk])

    response = back_office.post(url, _schedule_data(schedule, {20: 6_000, 21: 6_000}))

    assert response.status_code == 302
    assert WarmupDay.objects.get(schedule=schedule, day=20).daily_cap == 6_000
    assert warmup.daily_cap(tenant.account_a, on=date(2026, 3, 29)) == 6_000


@pytest.mark.parametrize(
    ("caps", "error"),
    [
        ({20: 9_000}, "Day 21: the cap (7,200) is lower than the day before (9,000); caps never go down."),
        ({1: 0}, "A cap must be at least 1 e-mail."),
    ],
)
def test_caps_must_be_positive_and_not_go_down(
    back_office: HttpClient, schedule: WarmupSchedule, caps: dict[int, int], error: str
) -> None:
    url = reverse("admin:deliverability_warmupschedule_change", args=[schedule.pk])

    response = back_office.post(url, _schedule_data(schedule, caps))

    assert response.status_code == 200
    assert error in response.content.decode()
    assert list(schedule.days.order_by("day").values_list("daily_cap", flat=True)) == warmup.default_schedule(175_000)


def test_days_must_not_have_gaps(back_office: HttpClient, schedule: WarmupSchedule) -> None:
    url = reverse("admin:deliverability_warmupschedule_change", args=[schedule.pk])
    data = _schedule_data(schedule)
    data["days-9-day"] = "47"  # day 10 becomes day 47

    response = back_office.post(url, data)

    assert response.status_code == 200
    assert "Days run 1, 2, 3… without gaps; missing: 10, 46." in response.content.decode()
    assert schedule.days.filter(day=47).count() == 0


def test_deleting_the_last_days_shortens_the_warmup(back_office: HttpClient, schedule: WarmupSchedule) -> None:
    url = reverse("admin:deliverability_warmupschedule_change", args=[schedule.pk])
    data = _schedule_data(schedule)
    data["days-44-DELETE"] = "on"

    response = back_office.post(url, data)

    assert response.status_code == 302
    assert schedule.days.count() == 44
    assert warmup.daily_cap(schedule.pool.sending_account_id, on=date(2026, 4, 23)) is None


def test_regenerate_asks_then_rewrites_the_caps(back_office: HttpClient, schedule: WarmupSchedule) -> None:
    changelist = reverse("admin:deliverability_warmupschedule_changelist")
    schedule.days.filter(day=20).update(daily_cap=6_000)

    page = back_office.post(changelist, {"action": "regenerate", ACTION_CHECKBOX_NAME: [schedule.pk]})
    assert page.status_code == 200
    assert "Regenerate warm-up caps" in page.content.decode()
    assert schedule.days.get(day=20).daily_cap == 6_000

    response = back_office.post(
        changelist,
        {
            "action": "regenerate",
            ACTION_CHECKBOX_NAME: [schedule.pk],
            "confirm": "yes",
            "target_daily_volume": "300000",
            "days": "30",
        },
        follow=True,
    )

    schedule.refresh_from_db()
    assert schedule.target_daily_volume == 300_000
    assert list(schedule.days.order_by("day").values_list("daily_cap", flat=True)) == warmup.default_schedule(
        300_000, 30
    )
    assert schedule.starts_on == date(2026, 3, 10)
    assert _messages(response) == ["1 warm-up schedule regenerated."]


def test_regenerate_keeps_each_schedules_own_target(back_office: HttpClient, schedule: WarmupSchedule) -> None:
    WarmupSchedule.objects.filter(pk=schedule.pk).update(target_daily_volume=250_000)

    back_office.post(
        reverse("admin:deliverability_warmupschedule_changelist"),
        {"action": "regenerate", ACTION_CHECKBOX_NAME: [schedule.pk], "confirm": "yes", "days": "45"},
    )

    assert schedule.days.get(day=45).daily_cap == 250_000
    assert schedule.days.count() == 45
