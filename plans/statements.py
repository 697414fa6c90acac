"""Usage statements: what was used per organisation or per client, in a calendar month or a plan term.

Statements are read from the ledger alone (``consume`` entries): an entry with a term is an
included e-mail used, an entry without one is overage at the ``price_per_1000`` written on it.
Service providers re-bill their clients from these rows, so everything is exact: e-mail counts
are integers, money is :class:`~decimal.Decimal`, and each line's amount is rounded once with
:func:`plans.models.overage_amount` (half up to the cent). Totals are sums of the rounded lines.

Two layers:

1. Queries (:func:`month_usage`, :func:`term_usage`) turn a tenant-scoped queryset of ledger
   entries into :class:`Usage` aggregates, one per client, sending account and price.
2. :func:`build_rows` (pure) groups those aggregates into :class:`StatementRow` lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from dateutil.relativedelta import relativedelta
from django.db.models import BooleanField, Exists, ExpressionWrapper, OuterRef, Q, QuerySet, Sum
from django.utils.translation import gettext as _

from plans.models import CreditEntry, Subscription, overage_amount

CURRENCY = "USD"
ZERO = Decimal("0.00")
_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


# --- periods ------------------------------------------------------------------------------


def parse_month(value: str) -> tuple[datetime, datetime]:
    """``"2026-03"`` -> the UTC bounds ``[start, end)`` of that calendar month; ValueError if malformed."""
    match = _MONTH_RE.match(value.strip())
    if not match:
        raise ValueError(value)
    year, month = int(match[1]), int(match[2])
    if not 1 <= month <= 12 or year < 1900:
        raise ValueError(value)
    start = datetime(year, month, 1, tzinfo=UTC)
    try:
        end = start + relativedelta(months=1)
    except (ValueError, OverflowError) as exc:
        raise ValueError(value) from exc
    return start, end


def month_label(start: datetime) -> str:
    """The ``YYYY-MM`` name of the month that starts at ``start``."""
    return f"{start:%Y-%m}"


def months_between(first: datetime, last: datetime) -> list[str]:
    """Month names from ``last`` back to ``first`` (both included), newest first."""
    cursor = first.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = last.astimezone(UTC)
    months: list[str] = []
    while cursor <= end:
        months.append(month_label(cursor))
        cursor += relativedelta(months=1)
    return months[::-1]


def term_label(term: Subscription) -> str:
    """A plan term as people know it: plan name and its dates (the end is exclusive)."""
    return f"{term.plan.name} {term.starts_at.astimezone(UTC):%Y-%m-%d}–{term.ends_at.astimezone(UTC):%Y-%m-%d}"


# --- rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """Consumed e-mails of one client and sending account: included (no price) or overage at a price."""

    client_id: int | None
    client_name: str
    account_id: int | None
    account_name: str
    overage: bool
    price_per_1000: Decimal | None
    emails: int


@dataclass(frozen=True)
class StatementRow:
    """One line of a statement. ``overage_amount`` is this line's overage, rounded to the cent."""

    period: str
    client: str
    sending_account: str
    included_used: int
    overage_emails: int
    price_per_1000: Decimal | None
    overage_amount: Decimal
    currency: str = CURRENCY
    client_id: int | None = None


@dataclass
class Statement:
    """The lines of one period, with totals that are sums of the (already rounded) lines."""

    period: str
    rows: list[StatementRow] = field(default_factory=list)
    by_client: bool = True
    by_account: bool = False

    @property
    def included_used(self) -> int:
        return sum(row.included_used for row in self.rows)

    @property
    def overage_emails(self) -> int:
        return sum(row.overage_emails for row in self.rows)

    @property
    def overage_amount(self) -> Decimal:
        return sum((row.overage_amount for row in self.rows), ZERO)

    @property
    def currency(self) -> str:
        return CURRENCY


@dataclass
class _Group:
    client: str
    account: str
    included: int = 0
    overage: dict[Decimal, int] = field(default_factory=dict)


def _sort_key(name: str, pk: int | None) -> tuple[bool, str, int]:
    # Named clients and accounts alphabetically; "not assigned" last.
    return (pk is None, name.casefold(), pk or 0)


def build_rows(
    usages: Iterable[Usage], period: str, *, by_client: bool = True, by_account: bool = False
) -> list[StatementRow]:
    """Group usage into statement lines; pure (no database).

    1. Group by client (or everything together when not ``by_client``: "All clients") and,
       with ``by_account``, by sending account.
    2. In each group, add up included e-mails, and overage e-mails per price.
    3. One line per overage price (lowest first), each rounded on its own; the group's included
       e-mails go on its first line. A group without overage is one line with amount 0.00.
    """
    groups: dict[tuple[int | None, int | None], _Group] = {}
    for usage in usages:
        key = (usage.client_id if by_client else None, usage.account_id if by_account else None)
        group = groups.setdefault(key, _Group(client=usage.client_name, account=usage.account_name))
        if not usage.overage:
            group.included += usage.emails
        elif usage.price_per_1000 is None:
            raise ValueError("an overage entry without a price")
        else:
            group.overage[usage.price_per_1000] = group.overage.get(usage.price_per_1000, 0) + usage.emails

    def order(item: tuple[tuple[int | None, int | None], _Group]) -> tuple[tuple[bool, str, int], ...]:
        (client_id, account_id), group = item
        return (
            _sort_key(group.client, client_id) if by_client else (False, "", 0),
            _sort_key(group.account, account_id) if by_account else (False, "", 0),
        )

    rows: list[StatementRow] = []
    for (client_id, account_id), group in sorted(groups.items(), key=order):
        if not by_client:
            client = _("All clients")
        elif client_id is None:
            client = _("Not assigned to a client")
        else:
            client = group.client
        if not by_account:
            account = ""
        elif account_id is None:
            account = _("No sending account")
        else:
            account = group.account
        lines: list[tuple[Decimal | None, int]] = [*sorted(group.overage.items())] or [(None, 0)]
        for index, (price, emails) in enumerate(lines):
            rows.append(
                StatementRow(
                    period=period,
                    client=client,
                    sending_account=account,
                    included_used=group.included if index == 0 else 0,
                    overage_emails=emails,
                    price_per_1000=price,
                    overage_amount=overage_amount(emails, price) if price is not None else ZERO,
                    client_id=client_id,
                )
            )
    return rows


# --- queries ------------------------------------------------------------------------------


def _aggregate(entries: QuerySet[CreditEntry]) -> list[Usage]:
    """Sum consumed e-mails per client, sending account, included/overage and price (one query)."""
    rows = (
        entries.annotate(
            no_term=ExpressionWrapper(Q(subscription__isnull=True), output_field=BooleanField()),
        )
        .values("client_id", "client__name", "sending_account_id", "sending_account__name", "no_term", "price_per_1000")
        .annotate(n=Sum("emails"))
        .order_by()
    )
    return [
        Usage(
            client_id=row["client_id"],
            client_name=row["client__name"] or "",
            account_id=row["sending_account_id"],
            account_name=row["sending_account__name"] or "",
            overage=row["no_term"],
            price_per_1000=row["price_per_1000"] if row["no_term"] else None,
            emails=int(row["n"]),
        )
        for row in rows
    ]


def month_usage(entries: QuerySet[CreditEntry], start: datetime, end: datetime) -> list[Usage]:
    """E-mails consumed in ``[start, end)``: the time the provider accepted them counts."""
    return _aggregate(entries.filter(kind=CreditEntry.Kind.CONSUME, created_at__gte=start, created_at__lt=end))


def term_usage(entries: QuerySet[CreditEntry], term: Subscription) -> list[Usage]:
    """E-mails used in a plan term: its included e-mails, and the overage it priced.

    Overage has no term in the ledger. It belongs to the term that set its price when the
    e-mails were reserved: the active term with the lowest price, and among terms with that
    price the one credits are drawn from first (ends first). So overlapping terms never
    count the same overage twice.
    """
    consume = entries.filter(kind=CreditEntry.Kind.CONSUME)
    reserved_at = OuterRef("reservation__created_at")
    drawn_earlier = Subscription.objects.filter(
        organisation_id=term.organisation_id,
        price_per_1000=term.price_per_1000,
        starts_at__lte=reserved_at,
        ends_at__gt=reserved_at,
    ).filter(
        Q(ends_at__lt=term.ends_at)
        | Q(ends_at=term.ends_at, starts_at__lt=term.starts_at)
        | Q(ends_at=term.ends_at, starts_at=term.starts_at, pk__lt=term.pk)
    )
    overage = consume.filter(
        subscription__isnull=True,
        price_per_1000=term.price_per_1000,
        reservation__created_at__gte=term.starts_at,
        reservation__created_at__lt=term.ends_at,
    ).exclude(Exists(drawn_earlier))
    return _aggregate(consume.filter(subscription=term)) + _aggregate(overage)


def month_statement(
    entries: QuerySet[CreditEntry], period: str, *, by_client: bool = True, by_account: bool = False
) -> Statement:
    """The statement of calendar month ``period`` (``YYYY-MM``, UTC) from the scoped ``entries``."""
    start, end = parse_month(period)
    usage = month_usage(entries, start, end)
    return Statement(
        period=period,
        rows=build_rows(usage, period, by_client=by_client, by_account=by_account),
        by_client=by_client,
        by_account=by_account,
    )


def term_statement(
    entries: QuerySet[CreditEntry], term: Subscription, *, by_client: bool = True, by_account: bool = False
) -> Statement:
    """The statement of one plan term from the scoped ``entries``."""
    label = term_label(term)
    usage = term_usage(entries, term)
    return Statement(
        period=label,
        rows=build_rows(usage, label, by_client=by_client, by_account=by_account),
        by_client=by_client,
        by_account=by_account,
    )
