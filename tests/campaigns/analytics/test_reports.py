"""The analytics pages: numbers per campaign, account, client and organisation, tenant isolation
(outsiders get 404, a client-user sees only its client), the machine toggle, CSV exports, the
pieces on the campaign, contact and dashboard pages, and empty states."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from campaigns.analytics.models import CampaignDomain
from campaigns.models import Campaign, Message
from tests.campaigns.analytics.fixtures_analytics import T0, Crafted, count, emit
from tests.campaigns.fixtures_segments import campaign as make_campaign
from tests.campaigns.fixtures_segments import contact, message
from tests.conftest import Tenant


@pytest.fixture(autouse=True)
def _recent(settings: Any, time_machine: Any) -> None:
    """The crafted events happened yesterday, inside every report period."""
    time_machine.move_to(T0 + timezone.timedelta(days=1), tick=False)


def _text(response: Any) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def _figure(page: str, testid: str) -> str:
    marker = f'data-testid="{testid}">'
    start = page.index(marker) + len(marker)
    return page[start : page.index("<", start)]


def _csv(response: Any) -> list[list[str]]:
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


def _urls(crafted: Crafted, tenant: Tenant) -> list[str]:
    return [
        reverse("campaigns:analytics:campaign", args=[crafted.campaign.pk]),
        reverse("campaigns:analytics:campaign_export", args=[crafted.campaign.pk]),
        reverse("campaigns:analytics:campaign_live", args=[crafted.campaign.pk]),
        reverse("campaigns:analytics:campaign_panel", args=[crafted.campaign.pk]),
        reverse("campaigns:analytics:account", args=[tenant.account_a.pk]),
        reverse("campaigns:analytics:account_export", args=[tenant.account_a.pk]),
        reverse("campaigns:analytics:client", args=[tenant.client_a.pk]),
        reverse("campaigns:analytics:client_export", args=[tenant.client_a.pk]),
        reverse("campaigns:analytics:message", args=[crafted.messages["m1"].pk]),
    ]


def test_the_campaign_report_shows_the_numbers(tenant: Tenant, crafted: Crafted, login: Any) -> None:
    page = _text(login(tenant.member).get(reverse("campaigns:analytics:campaign", args=[crafted.campaign.pk])))

    figures = {
        name: _figure(page, f"fig-{name}")
        for name in ("sent", "delivered", "bounces", "hard", "soft", "complaints", "unique-opens", "opens")
    }
    assert figures == {
        "sent": "7",
        "delivered": "4",
        "bounces": "3",
        "hard": "1",
        "soft": "2",
        "complaints": "1",
        "unique-opens": "2",
        "opens": "3",
    }
    assert (_figure(page, "fig-unique-clicks"), _figure(page, "fig-unsubscribes")) == ("1", "1")
    assert "25.0% click rate" in page
    assert "https://shop.example/spring" in page  # the links table
    assert "a.example" in page
    assert "b.example" in page


def test_the_machine_toggle_counts_machine_opens(tenant: Tenant, crafted: Crafted, login: Any) -> None:
    url = reverse("campaigns:analytics:campaign", args=[crafted.campaign.pk])

    page = _text(login(tenant.owner).get(url, {"machines": "1"}))

    assert (_figure(page, "fig-unique-opens"), _figure(page, "fig-opens")) == ("3", "5")
    assert 'aria-pressed="true"' in page


@pytest.mark.parametrize("index", range(9))
def test_an_outsider_gets_404_everywhere(
    tenant: Tenant, crafted: Crafted, outsider: User, login: Any, index: int
) -> None:
    response = login(outsider).get(_urls(crafted, tenant)[index])

    assert response.status_code == 404


def test_an_outsider_sees_none_of_the_organisation_in_its_own_overview(
    tenant: Tenant, crafted: Crafted, outsider: User, login: Any
) -> None:
    page = _text(login(outsider).get(reverse("campaigns:analytics:overview")))

    assert "Nothing sent in this period" in page
    assert "Spring" not in page


def test_a_client_user_sees_only_its_client(tenant: Tenant, crafted: Crafted, login: Any) -> None:
    client = login(tenant.client_user)

    overview = _text(client.get(reverse("campaigns:analytics:overview")))
    other_pages = [
        reverse("campaigns:analytics:client", args=[tenant.client_b.pk]),
        reverse("campaigns:analytics:account", args=[tenant.account_b.pk]),
        reverse("campaigns:analytics:campaign", args=[crafted.other.pk]),
        reverse("campaigns:analytics:account", args=[tenant.account_org.pk]),
        reverse("campaigns:analytics:message", args=[Message.objects.get(campaign=crafted.other).pk]),
        reverse("campaigns:analytics:campaign_export", args=[crafted.other.pk]),
    ]

    assert _figure(overview, "fig-sent") == "7"  # client B's message is not in it
    assert "Beta news" not in overview
    assert 'data-testid="breakdown-clients"' not in overview
    assert [client.get(url).status_code for url in other_pages] == [404] * 6
    assert client.get(reverse("campaigns:analytics:client", args=[tenant.client_a.pk])).status_code == 200


def test_the_organisation_overview_adds_up_every_client(tenant: Tenant, crafted: Crafted, login: Any) -> None:
    page = _text(login(tenant.owner).get(reverse("campaigns:analytics:overview")))

    assert _figure(page, "fig-sent") == "8"
    assert 'data-testid="breakdown-clients"' in page
    assert "Alpha Bakery" in page
    assert "Beta Cars" in page


def test_a_period_leaves_out_older_events(tenant: Tenant, crafted: Crafted, login: Any, time_machine: Any) -> None:
    time_machine.move_to(T0 + timezone.timedelta(days=10), tick=False)
    client = login(tenant.owner)

    week = _text(client.get(reverse("campaigns:analytics:overview"), {"period": "7"}))
    month = _text(client.get(reverse("campaigns:analytics:overview"), {"period": "30"}))

    assert "Nothing sent in this period" in week
    assert _figure(month, "fig-sent") == "8"


def test_the_campaign_export_has_the_totals(tenant: Tenant, crafted: Crafted, login: Any) -> None:
    url = reverse("campaigns:analytics:campaign_export", args=[crafted.campaign.pk])

    rows = _csv(login(tenant.owner).get(url, {"table": "summary"}))

    header, values = rows
    data = dict(zip(header, values, strict=True))
    assert (data["Report"], data["Sent"], data["Delivered"], data["Hard bounces"], data["Soft bounces"]) == (
        "Spring",
        "7",
        "4",
        "1",
        "2",
    )
    assert (data["Unique opens"], data["Machine opens"], data["Unique clicks"], data["Click rate (%)"]) == (
        "2",
        "2",
        "1",
        "25.0",
    )


def test_the_link_export_counts_unique_clicks_per_link(tenant: Tenant, crafted: Crafted, login: Any) -> None:
    url = reverse("campaigns:analytics:campaign_export", args=[crafted.campaign.pk])

    rows = _csv(login(tenant.owner).get(url, {"table": "links"}))

    assert rows == [
        ["Link", "Unique clicks", "Clicks", "Machine clicks"],
        ["https://shop.example/spring", "1", "2", "1"],
        ["https://shop.example/terms", "1", "1", "0"],
    ]


def test_exports_escape_spreadsheet_formulas(tenant: Tenant, crafted: Crafted, login: Any) -> None:
    Campaign.objects.filter(pk=crafted.campaign.pk).update(name='=HYPERLINK("http://evil")')
    CampaignDomain.objects.filter(recipient_domain="a.example").update(recipient_domain="@SUM(1+1)")
    client = login(tenant.owner)

    campaigns = _csv(client.get(reverse("campaigns:analytics:overview_export"), {"table": "campaigns"}))
    domains = _csv(
        client.get(reverse("campaigns:analytics:campaign_export", args=[crafted.campaign.pk]), {"table": "domains"})
    )

    assert [row[:2] for row in campaigns[1:]] == [["Beta news", "1"], ['\'=HYPERLINK("http://evil")', "7"]]
    assert [row[:2] for row in domains[1:]] == [["b.example", "5"], ["'@SUM(1+1)", "2"]]


def test_the_series_export_has_one_row_per_hour(tenant: Tenant, crafted: Crafted, login: Any) -> None:
    url = reverse("campaigns:analytics:campaign_export", args=[crafted.campaign.pk])

    rows = _csv(login(tenant.owner).get(url, {"table": "series"}))

    hours = [row[0][-5:] for row in rows[1:]]
    assert hours == ["10:00", "11:00", "12:00"]  # Europe/Berlin, UTC+1 in March
    assert [row[1] for row in rows[1:]] == ["7", "0", "0"]


def test_an_unknown_export_table_is_404(tenant: Tenant, crafted: Crafted, login: Any) -> None:
    url = reverse("campaigns:analytics:account_export", args=[tenant.account_a.pk])

    assert login(tenant.owner).get(url, {"table": "links"}).status_code == 404


def test_the_campaign_page_shows_the_results_panel(tenant: Tenant, crafted: Crafted, login: Any) -> None:
    Campaign.objects.filter(pk=crafted.campaign.pk).update(status=Campaign.Status.SENDING)

    page = _text(login(tenant.owner).get(reverse("campaigns:campaign_detail", args=[crafted.campaign.pk])))

    assert 'data-testid="analytics-panel"' in page
    assert reverse("campaigns:analytics:campaign_panel", args=[crafted.campaign.pk]) in page  # polls while sending
    assert _figure(page, "fig-delivered") == "4"


def test_the_live_figures_follow_new_events(tenant: Tenant, crafted: Crafted, login: Any) -> None:
    Campaign.objects.filter(pk=crafted.campaign.pk).update(status=Campaign.Status.SENDING)
    client = login(tenant.owner)
    url = reverse("campaigns:analytics:campaign_live", args=[crafted.campaign.pk])
    assert _figure(_text(client.get(url)), "fig-delivered") == "4"

    emit(crafted.messages["m3"], "delivery", T0)
    count()

    page = _text(client.get(url))
    assert _figure(page, "fig-delivered") == "5"
    assert 'hx-trigger="every 10s"' in page


def test_a_draft_campaign_report_says_what_to_do(tenant: Tenant, login: Any) -> None:
    draft = make_campaign(tenant.account_a, "Autumn", sender=tenant.sender_a)

    page = _text(login(tenant.owner).get(reverse("campaigns:analytics:campaign", args=[draft.pk])))

    assert "Not sent yet" in page
    assert reverse("campaigns:campaign_detail", args=[draft.pk]) in page


def test_the_contact_page_shows_its_activity(tenant: Tenant, crafted: Crafted, login: Any) -> None:
    person = crafted.contacts["m1"]

    page = _text(login(tenant.owner).get(reverse("campaigns:contact_detail", args=[person.pk])))

    activity = page[page.index('data-testid="contact-activity"') :]
    assert activity.count('data-type="click"') == 3
    assert activity.count('data-type="open"') == 2
    assert "https://shop.example/terms" in activity
    assert reverse("campaigns:analytics:message", args=[crafted.messages["m1"].pk]) in activity


def test_a_contact_without_mail_has_an_empty_timeline(tenant: Tenant, login: Any) -> None:
    person = contact(tenant.organisation, "new@a.example")

    page = _text(login(tenant.owner).get(reverse("campaigns:contact_detail", args=[person.pk])))

    assert "No e-mail has reached this contact yet" in page


def test_the_message_timeline_is_in_order(tenant: Tenant, crafted: Crafted, login: Any) -> None:
    page = _text(login(tenant.owner).get(reverse("campaigns:analytics:message", args=[crafted.messages["m2"].pk])))

    types = [part.split('"', 1)[0] for part in page.split('data-type="')[1:]]
    assert types == ["send", "delivery", "open", "click", "open"]
    assert page.count(">machine</span>") == 2


def test_the_recipient_search_finds_a_message(tenant: Tenant, crafted: Crafted, login: Any) -> None:
    url = reverse("campaigns:analytics:campaign", args=[crafted.campaign.pk])

    page = _text(login(tenant.owner).get(url, {"recipient": "m4@"}))

    assert reverse("campaigns:analytics:message", args=[crafted.messages["m4"].pk]) in page
    assert reverse("campaigns:analytics:message", args=[crafted.messages["m1"].pk]) not in page


def test_the_dashboard_shows_the_last_30_days(tenant: Tenant, crafted: Crafted, login: Any) -> None:
    page = _text(login(tenant.owner).get(reverse("dashboard")))

    assert 'data-testid="analytics-dashboard-card"' in page
    assert _figure(page, "dash-sent") == "8"


def test_the_client_report_lists_its_accounts(tenant: Tenant, crafted: Crafted, login: Any) -> None:
    page = _text(login(tenant.owner).get(reverse("campaigns:analytics:client", args=[tenant.client_a.pk])))

    assert _figure(page, "fig-sent") == "7"
    accounts = page[page.index('data-testid="breakdown-accounts"') :]
    assert "Alpha account" in accounts
    assert "Beta account" not in accounts


def test_triggered_mail_counts_in_the_account_report(tenant: Tenant, crafted: Crafted, login: Any) -> None:
    triggered = message(crafted.campaign, contact(tenant.organisation, "t@a.example"))
    triggered.campaign = None
    triggered.save()
    emit(triggered, "send", T0)
    count()

    page = _text(login(tenant.owner).get(reverse("campaigns:analytics:account", args=[tenant.account_a.pk])))

    assert _figure(page, "fig-sent") == "8"


def test_the_reports_answer_in_few_queries(
    tenant: Tenant, crafted: Crafted, login: Any, django_assert_max_num_queries: Any
) -> None:
    client = login(tenant.owner)
    client.get(reverse("dashboard"))  # session and membership warm

    with django_assert_max_num_queries(20):
        _text(client.get(reverse("campaigns:analytics:overview")))
    with django_assert_max_num_queries(16):
        _text(client.get(reverse("campaigns:analytics:campaign", args=[crafted.campaign.pk])))
