"""Usage statements: exact included and overage numbers per month and per plan term, per client,
their CSV and XLSX export (formula-safe), and tenancy of the page and the export."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import openpyxl
import pytest
from django.test import Client as HttpClient
from django.urls import reverse

from accounts.models import SendingAccount
from plans import services
from plans.models import Plan, Subscription
from plans.resources import escape_formula
from plans.statements import StatementRow, Usage, build_rows
from tests.conftest import Tenant

HEADER = [
    "Period",
    "Client",
    "Included e-mails used",
    "Overage e-mails",
    "Price per 1,000 overage e-mails",
    "Overage amount",
    "Currency",
]


def at(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 10, 0, tzinfo=UTC)


def send(account: SendingAccount, emails: int, when: datetime) -> None:
    """Reserve and consume ``emails`` for ``account`` at ``when`` (as the sending pipeline will)."""
    reservation = services.reserve(account.organisation, emails, sending_account=account, at=when)
    services.consume(reservation, emails, at=when)


@dataclass
class Usage2026:
    term1: Subscription  # 1,000 included at $5.00 per 1,000, from 1 March
    term2: Subscription  # 100 included at $4.00 per 1,000, from 10 March


@pytest.fixture
def usage(tenant: Tenant) -> Usage2026:
    """March 2026, with two overlapping terms and overage at two prices.

    - 2 Mar  Alpha 1,000 included (term 1 is used up)
    - 3 Mar  Beta 1 overage at $5.00 ($0.005, rounds half up to $0.01)
    - 4 Mar  Alpha 3 overage at $5.00 ($0.015 -> $0.02)
    - 10 Mar term 2 starts: overage is now priced at its $4.00
    - 11 Mar Alpha 150: 100 included (term 2) + 50 overage at $4.00 ($0.20)
    - 12 Mar no client (organisation's own account): 7 overage at $4.00 ($0.028 -> $0.03)
    - 1 Apr  Beta 10 overage at $4.00 ($0.04), not in March
    """
    organisation = tenant.organisation
    small = Plan.objects.create(
        code="small-5", name="Small", emails_per_year=1_000, price_per_1000=Decimal("5.00"), eligibility="any"
    )
    cheap = Plan.objects.create(
        code="cheap-4", name="Cheap", emails_per_year=100, price_per_1000=Decimal("4.00"), eligibility="any"
    )
    term1 = services.grant_plan(organisation, small, origin=Subscription.Origin.XES_TEAM, at=at(3, 1))
    send(tenant.account_a, 1_000, at(3, 2))
    send(tenant.account_b, 1, at(3, 3))
    send(tenant.account_a, 3, at(3, 4))
    term2 = services.grant_plan(organisation, cheap, origin=Subscription.Origin.XES_TEAM, at=at(3, 10))
    send(tenant.account_a, 150, at(3, 11))
    send(tenant.account_org, 7, at(3, 12))
    send(tenant.account_b, 10, at(4, 1))
    return Usage2026(term1=term1, term2=term2)


def _export(http: HttpClient, fmt: str, **params: Any) -> Any:
    return http.get(reverse("plans_statement_export", args=[fmt]), params)


def _csv(response: Any) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode("utf-8"))))


def _xlsx(response: Any) -> list[list[Any]]:
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    return [[cell.value for cell in row] for row in sheet.iter_rows()]


def _lines(response: Any) -> list[tuple[str, int, int, str, str]]:
    """(client, included, overage, price, amount) of each CSV line."""
    return [(r[1], int(r[2]), int(r[3]), r[4], r[5]) for r in _csv(response)[1:]]


# --- the numbers --------------------------------------------------------------------------


def test_month_statement_per_client_is_exact(tenant: Tenant, usage: Usage2026, login: Any) -> None:
    response = _export(login(tenant.owner), "csv", period="2026-03")

    assert response.status_code == 200
    assert _lines(response) == [
        ("Alpha Bakery", 1_100, 50, "4.00", "0.20"),
        ("Alpha Bakery", 0, 3, "5.00", "0.02"),
        ("Beta Cars", 0, 1, "5.00", "0.01"),
        ("Not assigned to a client", 0, 7, "4.00", "0.03"),
    ]


def test_month_statement_for_the_whole_organisation_rounds_each_price_line(
    tenant: Tenant, usage: Usage2026, login: Any
) -> None:
    response = _export(login(tenant.owner), "csv", period="2026-03", by="organisation")

    # 57 at $4.00 = $0.228 -> $0.23; 4 at $5.00 = $0.02
    assert _lines(response) == [
        ("All clients", 1_100, 57, "4.00", "0.23"),
        ("All clients", 0, 4, "5.00", "0.02"),
    ]


def test_next_month_holds_only_its_own_usage(tenant: Tenant, usage: Usage2026, login: Any) -> None:
    response = _export(login(tenant.owner), "csv", period="2026-04")

    assert _lines(response) == [("Beta Cars", 0, 10, "4.00", "0.04")]


def test_term_statements_split_overage_by_the_term_that_priced_it(tenant: Tenant, usage: Usage2026, login: Any) -> None:
    http = login(tenant.owner)

    first = _export(http, "csv", term=usage.term1.pk)
    second = _export(http, "csv", term=usage.term2.pk)

    assert _lines(first) == [
        ("Alpha Bakery", 1_000, 3, "5.00", "0.02"),
        ("Beta Cars", 0, 1, "5.00", "0.01"),
    ]
    assert _lines(second) == [
        ("Alpha Bakery", 100, 50, "4.00", "0.20"),
        ("Beta Cars", 0, 10, "4.00", "0.04"),
        ("Not assigned to a client", 0, 7, "4.00", "0.03"),
    ]
    assert _csv(first)[1][0] == "Small 2026-03-01–2027-03-01"


def test_sending_account_breakdown_adds_a_column(tenant: Tenant, usage: Usage2026, login: Any) -> None:
    rows = _csv(_export(login(tenant.owner), "csv", period="2026-03", accounts="1"))

    assert rows[0][:3] == ["Period", "Client", "Sending account"]
    assert [(r[1], r[2], r[4]) for r in rows[1:]] == [
        ("Alpha Bakery", "Alpha account", "50"),
        ("Alpha Bakery", "Alpha account", "3"),
        ("Beta Cars", "Beta account", "1"),
        ("Not assigned to a client", "Acme main", "7"),
    ]


def test_rounding_is_half_up_per_line() -> None:
    usages = [
        Usage(1, "A", None, "", overage=True, price_per_1000=Decimal("5.00"), emails=1),
        Usage(2, "B", None, "", overage=True, price_per_1000=Decimal("5.00"), emails=1),
        Usage(3, "C", None, "", overage=False, price_per_1000=None, emails=42),
    ]

    rows = build_rows(usages, "2026-03")

    # $0.005 each: half up gives a cent per line (half-even would give nothing).
    assert [(r.client, r.overage_amount) for r in rows] == [
        ("A", Decimal("0.01")),
        ("B", Decimal("0.01")),
        ("C", Decimal("0.00")),
    ]
    assert rows[2] == StatementRow("2026-03", "C", "", 42, 0, None, Decimal("0.00"), "USD", 3)
    assert sum(r.overage_amount for r in rows) == Decimal("0.02")


# --- the files ----------------------------------------------------------------------------


def test_csv_export_is_an_attachment_with_a_sensible_name(tenant: Tenant, usage: Usage2026, login: Any) -> None:
    response = _export(login(tenant.owner), "csv", period="2026-03")

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="xes-statement-acme-agency-2026-03.csv"'
    rows = _csv(response)
    assert rows[0] == HEADER
    assert rows[1] == ["2026-03", "Alpha Bakery", "1100", "50", "4.00", "0.20", "USD"]


def test_xlsx_export_has_numbers_in_cells(tenant: Tenant, usage: Usage2026, login: Any) -> None:
    response = _export(login(tenant.owner), "xlsx", term=usage.term2.pk)

    assert response["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    disposition = response["Content-Disposition"]
    assert disposition.startswith('attachment; filename="xes-statement-acme-agency-term-2026-03-10-')
    assert disposition.endswith('.xlsx"')
    rows = _xlsx(response)
    assert rows[0] == HEADER
    period, client, included, overage, price, amount, currency = rows[1]
    assert (period, client, included, overage, currency) == (
        "Cheap 2026-03-10–2027-03-10",
        "Alpha Bakery",
        100,
        50,
        "USD",
    )
    assert Decimal(str(price)) == Decimal("4.00")
    assert Decimal(str(amount)) == Decimal("0.20")


FORMULAE = ['=HYPERLINK("http://evil.example","Invoice")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)"]


@pytest.fixture
def hostile_names(tenant: Tenant, usage: Usage2026) -> None:
    """Client and account names a customer typed to attack whoever opens the export."""
    tenant.client_a.name = FORMULAE[0]
    tenant.client_a.save()
    tenant.client_b.name = FORMULAE[1]
    tenant.client_b.save()
    tenant.account_a.name = FORMULAE[2]
    tenant.account_a.save()
    tenant.account_org.name = FORMULAE[3]
    tenant.account_org.save()


@pytest.mark.usefixtures("hostile_names")
def test_csv_export_escapes_formulae(tenant: Tenant, login: Any) -> None:
    rows = _csv(_export(login(tenant.owner), "csv", period="2026-03", accounts="1"))

    cells = {cell for row in rows[1:] for cell in row[1:3]}
    assert cells == {"'" + text for text in FORMULAE} | {"Beta account", "Not assigned to a client"}
    assert not any(cell[:1] in "=+-@" for row in rows for cell in row if cell)


@pytest.mark.usefixtures("hostile_names")
def test_xlsx_export_escapes_formulae(tenant: Tenant, login: Any) -> None:
    response = _export(login(tenant.owner), "xlsx", period="2026-03", accounts="1")

    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    cells = [cell for row in sheet.iter_rows(min_row=2) for cell in row]
    assert all(cell.data_type != "f" for cell in cells)
    texts = {cell.value for cell in cells if cell.column in (2, 3)}
    assert texts == {"'" + text for text in FORMULAE} | {"Beta account", "Not assigned to a client"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("==1+1", "'==1+1"),
        ("  =1+1", "'  =1+1"),
        ("\t=1+1", "'\t=1+1"),
        ("\uff1d1+1", "'\uff1d1+1"),
        ("Alpha Bakery", "Alpha Bakery"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_escape_formula(value: str, expected: str) -> None:
    assert escape_formula(value) == expected


# --- the page and the requests ------------------------------------------------------------


def test_page_shows_the_statement_with_export_links(
    tenant: Tenant, usage: Usage2026, login: Any, django_assert_max_num_queries: Any
) -> None:
    http = login(tenant.owner)

    with django_assert_max_num_queries(12):
        response = http.get(reverse("plans_statements"), {"period": "2026-03"})

    html = response.content.decode()
    assert response.status_code == 200
    assert "Beta Cars" in html
    assert "Not assigned to a client" in html
    assert response.context["statement"].overage_amount == Decimal("0.26")
    assert response.context["statement"].included_used == 1_100
    assert f"{reverse('plans_statement_export', args=['csv'])}?period=2026-03&amp;by=client" in html
    assert "Small 2026-03-01–2027-03-01" in html  # the term selector


def test_page_defaults_to_the_current_month(tenant: Tenant, login: Any) -> None:
    response = login(tenant.member).get(reverse("plans_statements"))

    assert response.status_code == 200
    assert response.context["selection"].period == datetime.now(UTC).strftime("%Y-%m")
    assert response.context["statement"].rows == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"period": "2026-13"}, "is not a month"),
        ({"period": "March"}, "Write it as YYYY-MM"),
        ({}, "Choose a month"),
        ({"period": "2026-03", "term": "1"}, "not both"),
        ({"term": "abc"}, "by its number"),
        ({"term": "²"}, "by its number"),
        ({"term": "9" * 30}, "by its number"),
        ({"period": "2026-03", "by": "planet"}, "“client” or “organisation”"),
    ],
)
def test_export_answers_400_with_a_clear_message(
    tenant: Tenant, login: Any, params: dict[str, str], message: str
) -> None:
    response = _export(login(tenant.owner), "csv", **params)

    assert response.status_code == 400
    assert message in response.content.decode()


def test_page_answers_400_for_a_bad_month(tenant: Tenant, login: Any) -> None:
    response = login(tenant.owner).get(reverse("plans_statements"), {"period": "2026-00"})

    assert response.status_code == 400
    assert "is not a month" in response.content.decode()


def test_unknown_format_is_404(tenant: Tenant, login: Any) -> None:
    assert _export(login(tenant.owner), "pdf", period="2026-03").status_code == 404


def test_anonymous_is_sent_to_login(client: HttpClient) -> None:
    response = _export(client, "csv", period="2026-03")

    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_outsider_gets_404_for_a_foreign_term(outsider: Any, usage: Usage2026, login: Any) -> None:
    http = login(outsider)

    assert _export(http, "csv", term=usage.term1.pk).status_code == 404
    assert _export(http, "xlsx", term=usage.term1.pk).status_code == 404
    assert http.get(reverse("plans_statements"), {"term": usage.term1.pk}).status_code == 404


def test_outsider_month_statement_holds_none_of_the_tenants_usage(outsider: Any, usage: Usage2026, login: Any) -> None:
    rows = _csv(_export(login(outsider), "csv", period="2026-03"))

    assert rows == [HEADER]


def test_client_user_sees_only_its_client(tenant: Tenant, usage: Usage2026, login: Any) -> None:
    http = login(tenant.client_user)

    month = _export(http, "csv", period="2026-03", by="organisation")  # cannot ask for the organisation's total
    term = _export(http, "csv", term=usage.term2.pk)
    page = http.get(reverse("plans_statements"), {"period": "2026-03"})

    # Client-users get their e-mails without the provider's prices (its wholesale cost).
    assert _csv(month)[0] == ["Period", "Client", "Included e-mails used", "Overage e-mails"]
    assert [(r[1], int(r[2]), int(r[3])) for r in _csv(month)[1:]] == [
        ("Alpha Bakery", 1_100, 50),
        ("Alpha Bakery", 0, 3),
    ]
    assert [(r[1], int(r[2]), int(r[3])) for r in _csv(term)[1:]] == [("Alpha Bakery", 100, 50)]
    assert month["Content-Disposition"] == 'attachment; filename="xes-statement-acme-agency-alpha-bakery-2026-03.csv"'
    html = page.content.decode()
    assert page.status_code == 200
    assert "Beta Cars" not in html
    assert "Not assigned to a client" not in html
    assert "Overage amount" not in html
