"""The customer's reputation page of a sending account: standing, rates against the thresholds, the
score and what drives it, trends, history, advice; the empty state; tenant isolation."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import time_machine
from django.test import Client as HttpClient
from django.urls import reverse

from accounts.models import SendingAccount, User
from deliverability.models import DnsRecord, Domain
from deliverability.reputation import services
from tests.conftest import Tenant
from tests.deliverability.reputation.helpers import day, evaluate_at, traffic

pytestmark = pytest.mark.django_db
Kind, Status = DnsRecord.Kind, DnsRecord.Status


def page_url(account: SendingAccount) -> str:
    return reverse("deliverability:reputation", args=[account.pk])


def get(client: HttpClient, user: User, account: SendingAccount, at: Any = None) -> Any:
    client.force_login(user)
    with time_machine.travel(at or day(1), tick=False):
        return client.get(page_url(account))


def test_a_new_account_shows_the_empty_state(client: HttpClient, tenant: Tenant) -> None:
    response = get(client, tenant.owner, tenant.account_org)

    page = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="empty-state"' in page
    assert "No e-mails sent yet" in page
    assert "No changes of standing yet." in page
    assert 'id="reputation-chart-data"' not in page
    report = response.context["report"]
    # no mail yet: the rate parts are full, authentication has no domain to score
    assert report.score == 85
    assert {d.key: d.points for d in report.drivers} == {
        "bounces": 35,
        "complaints": 40,
        "authentication": 0,
        "hygiene": 10,
    }


def test_the_page_shows_rates_against_thresholds_score_trend_and_history(
    client: HttpClient, tenant: Tenant, staff_user: User
) -> None:
    # given: 3% bounces and 1 complaint in 950 deliveries (0.105%), then a note of the team
    traffic(tenant.account_a, day(0), sent=1000, hard=30, soft=20, complaints=1)
    evaluate_at(day(0, 13))
    services.add_note(tenant.account_a, by=staff_user, note="Internal: watch this one")
    # when
    response = get(client, tenant.owner, tenant.account_a)
    # then
    page = response.content.decode()
    report = response.context["report"]
    assert response.status_code == 200
    assert report.rates_apply is True  # 950 deliveries in the window
    bounce, complaint = report.meters
    assert (bounce.rate_text, complaint.rate_text) == ("3%", "0.105%")
    assert [text for _name, text, _pos in bounce.levels] == ["2%", "4%", "8%"]
    assert [text for _name, text, _pos in complaint.levels] == ["0.08%", "0.1%", "0.3%"]
    assert bounce.level == "warning"
    assert complaint.level == "probation"
    assert bounce.position == 37.5  # halfway through the warning zone (2% to 4%), the second of four
    assert "30 hard bounces of 1,000 e-mails sent" in page
    by_key = {d.key: d.points for d in report.drivers}
    assert by_key["bounces"] == 9  # 35 * (1 - 3/4), rounded
    assert by_key["complaints"] == 0  # at the probation level
    assert report.score == sum(by_key.values())
    chart = json.loads(re.search(r'id="reputation-chart-data"[^>]*>(.*?)</script>', page, re.S).group(1))
    assert len(chart["labels"]) == 30
    assert chart["bounce"][-1] == 3.0
    assert chart["levels"]["bounce"] == {"warning": 2.0, "probation": 4.0}
    assert len(report.history) == 1
    assert "Probation level reached: the complaint rate reached 0.1%" in page
    assert "Internal: watch this one" not in page  # the team's notes stay in the back office
    assert "Remove addresses that bounce" in page


def test_rates_apply_note_depends_on_volume(client: HttpClient, tenant: Tenant) -> None:
    traffic(tenant.account_a, day(0), sent=200)
    few = get(client, tenant.owner, tenant.account_a)
    traffic(tenant.account_a, day(0, 14), sent=400)
    enough = get(client, tenant.owner, tenant.account_a)

    assert 'data-testid="few-deliveries"' in few.content.decode()
    assert 'data-testid="few-deliveries"' not in enough.content.decode()


def test_probation_shows_the_clean_days_so_far(client: HttpClient, tenant: Tenant) -> None:
    traffic(tenant.account_a, day(0, 10), sent=1000, hard=45)
    evaluate_at(day(0, 12))
    for n in (1, 2, 3):
        traffic(tenant.account_a, day(n, 9), sent=300)

    response = get(client, tenant.owner, tenant.account_a, at=day(3, 15))

    assert response.context["report"].clean_days == 4  # day 0 after the probation began, and days 1-3
    assert "4 of 7 clean days so far." in response.content.decode()
    assert "promotional campaigns are paused" in response.content.decode()


def test_authentication_counts_the_domains_records(client: HttpClient, tenant: Tenant) -> None:
    good = Domain.objects.create(sending_account=tenant.account_a, name="alpha.example", verification_token="t1")
    for kind, status in [(Kind.DKIM, Status.OK), (Kind.SPF, Status.OK), (Kind.DMARC, Status.MISSING)]:
        DnsRecord.objects.create(
            domain=good, kind=kind, name=f"{kind}.alpha.example", rtype="TXT", value="v", status=status
        )

    response = get(client, tenant.owner, tenant.account_a)

    auth = next(d for d in response.context["report"].drivers if d.key == "authentication")
    assert auth.points == 10  # DKIM 6 + SPF 4, no DMARC
    assert response.context["report"].domains[0]["dmarc"] == "missing"
    assert "alpha.example" in response.content.decode()


def test_the_account_page_panel_links_to_the_reputation_page(client: HttpClient, tenant: Tenant) -> None:
    traffic(tenant.account_a, day(0), sent=100, hard=1)
    client.force_login(tenant.owner)

    with time_machine.travel(day(0, 13), tick=False):
        response = client.get(reverse("deliverability:account_standing_panel", args=[tenant.account_a.pk]))

    page = response.content.decode()
    assert page_url(tenant.account_a) in page
    assert "bounces 1%" in page


@pytest.mark.parametrize("who", ["owner", "member", "client_user"])
def test_members_who_see_the_account_see_its_reputation(client: HttpClient, tenant: Tenant, who: str) -> None:
    assert get(client, getattr(tenant, who), tenant.account_a).status_code == 200


def test_an_outsider_gets_404(client: HttpClient, tenant: Tenant, outsider: User) -> None:
    assert get(client, outsider, tenant.account_a).status_code == 404


def test_a_client_user_gets_404_for_another_clients_account(client: HttpClient, tenant: Tenant) -> None:
    assert get(client, tenant.client_user, tenant.account_b).status_code == 404


def test_anonymous_visitors_are_sent_to_the_login(client: HttpClient, tenant: Tenant) -> None:
    response = client.get(page_url(tenant.account_a))

    assert response.status_code == 302
    assert "login" in response.url


def test_the_page_needs_few_queries(client: HttpClient, tenant: Tenant, django_assert_max_num_queries: Any) -> None:
    for n in range(10):
        traffic(tenant.account_a, day(-n), sent=100, hard=1)
    client.force_login(tenant.owner)

    with time_machine.travel(day(1), tick=False), django_assert_max_num_queries(14):
        response = client.get(page_url(tenant.account_a))

    assert response.status_code == 200
