"""Credit rules: orders, terms, the pool, reservations and the ledger.

Every function that moves credits first locks the organisation's :class:`CreditAccount` row
(:func:`lock_credit_account`), so all movements of one organisation are serialised; the lock
order is always credit account, then terms, then reservations.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from dateutil.relativedelta import relativedelta
from django.db import transaction
from django.db.models import F, Q, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Client, Membership, Organisation, SendingAccount, User
from accounts.services import ServiceError, normalise_domain
from plans.constants import (
    CUSTOM_PLAN_MIN_EMAILS,
    POOL_WARNING_LEVELS,
    PRICE_UNIT,
    STARTER_RENEW_AHEAD,
    STARTER_RENEW_GRACE,
    TERM_MONTHS,
)
from plans.models import (
    AddOnProduct,
    AddOnSubscription,
    ClientAllocation,
    CreditAccount,
    CreditEntry,
    Order,
    Plan,
    Reservation,
    ReservationPart,
    Subscription,
    overage_amount,
)
from xes_portal.lib import emails

Kind = CreditEntry.Kind

# Effect of one e-mail of each kind on a term's (available, reserved, used) balances.
EFFECTS: dict[str, tuple[int, int, int]] = {
    Kind.GRANT: (1, 0, 0),
    Kind.ADJUST: (1, 0, 0),
    Kind.RESERVE: (-1, 1, 0),
    Kind.CONSUME: (0, -1, 1),
    Kind.RELEASE: (1, -1, 0),
    Kind.EXPIRE: (-1, 0, 0),
}


class CreditRefused(ServiceError):
    """A reservation was refused; ``code`` says why, ``str(exc)`` explains it to a person."""

    class Code(StrEnum):
        NO_PLAN = "no_plan"
        INSUFFICIENT = "insufficient_credits"
        OVERAGE_LIMIT = "overage_limit"
        CLIENT_CAP = "client_cap"
        STANDING = "account_standing"

    def __init__(self, code: CreditRefused.Code, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- time ---------------------------------------------------------------------------------


def term_end(start: datetime) -> datetime:
    """12 calendar months after ``start``, counted in UTC; 29 February ends on 28 February of the next year.

    An aware ``start`` in another time zone is converted first, so that the same instant always gives
    the same end (in Europe/Berlin, 29 Feb 00:30 is 28 Feb in UTC).
    """
    if timezone.is_naive(start):
        raise ValueError("term_end() needs an aware datetime")
    return start.astimezone(UTC) + relativedelta(months=TERM_MONTHS)


def month_start(at: datetime) -> datetime:
    """The start of the calendar month (UTC) that contains ``at``."""
    return at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


# --- locking and ledger -------------------------------------------------------------------


def lock_credit_account(organisation: Organisation) -> CreditAccount:
    """Lock (creating if needed) the row that serialises the organisation's credit movements."""
    CreditAccount.objects.get_or_create(organisation=organisation)
    return CreditAccount.objects.select_for_update().get(organisation=organisation)


def _record(
    account: CreditAccount,
    kind: str,
    emails_count: int,
    *,
    subscription: Subscription | None = None,
    reservation: Reservation | None = None,
    price_per_1000: Decimal | None = None,
    reason: str = "",
    by: User | None = None,
    at: datetime | None = None,
) -> CreditEntry:
    """Write one ledger entry and apply its effect to the balances it explains."""
    entry = CreditEntry.objects.create(
        organisation_id=account.organisation_id,
        subscription=subscription,
        reservation=reservation,
        client_id=reservation.client_id if reservation else None,
        sending_account_id=reservation.sending_account_id if reservation else None,
        kind=kind,
        emails=emails_count,
        price_per_1000=price_per_1000,
        reason=reason,
        created_by=by,
        created_at=at or timezone.now(),
    )
    d_available, d_reserved, d_used = EFFECTS[kind]
    if subscription is not None:
        subscription.available += d_available * emails_count
        subscription.reserved += d_reserved * emails_count
        subscription.used += d_used * emails_count
        subscription.save(update_fields=["available", "reserved", "used"])
    else:
        account.overage_reserved += d_reserved * emails_count
        account.overage_used += d_used * emails_count
        account.save(update_fields=["overage_reserved", "overage_used"])
    return entry


# --- the pool -----------------------------------------------------------------------------


def active_terms(organisation: Organisation, at: datetime | None = None) -> QuerySet[Subscription]:
    """Terms that count now, the one that ends first first (the order credits are drawn in)."""
    at = at or timezone.now()
    return Subscription.objects.filter(
        organisation=organisation, starts_at__lte=at, ends_at__gt=at, expired_at__isnull=True
    ).order_by("ends_at", "starts_at", "pk")


@dataclass
class Pool:
    included: int = 0
    available: int = 0
    reserved: int = 0
    used: int = 0
    terms: list[Subscription] = field(default_factory=list)
    overage_price: Decimal | None = None

    @property
    def used_percent(self) -> int:
        if not self.included:
            return 0
        return min(100, (self.used + self.reserved) * 100 // self.included)

    @property
    def key(self) -> str:
        return ",".join(str(t.pk) for t in self.terms)


def pool(organisation: Organisation, at: datetime | None = None) -> Pool:
    result = Pool(terms=list(active_terms(organisation, at).select_related("plan")))
    for term in result.terms:
        result.included += term.included_emails
        result.available += term.available
        result.reserved += term.reserved
        result.used += term.used
    result.overage_price = overage_price(result.terms)
    return result


def overage_price(terms: list[Subscription]) -> Decimal | None:
    """Overage is priced at the lowest price per 1,000 among the active terms (best for the customer)."""
    prices = [t.price_per_1000 for t in terms]
    return min(prices) if prices else None


def overage_limit_emails(account: CreditAccount, price: Decimal) -> int | None:
    """How many overage e-mails the monthly money limit allows at ``price`` (None: no limit)."""
    if account.monthly_overage_limit is None:
        return None
    if price == 0:
        return None
    return int(account.monthly_overage_limit * PRICE_UNIT / price)


def overage_used_in_month(organisation: Organisation, at: datetime) -> int:
    start = month_start(at)
    total = CreditEntry.objects.filter(
        organisation=organisation,
        subscription__isnull=True,
        kind=Kind.CONSUME,
        created_at__gte=start,
        created_at__lt=start + relativedelta(months=1),
    ).aggregate(n=Sum("emails"))["n"]
    return int(total or 0)


# --- client caps --------------------------------------------------------------------------


@dataclass
class ClientUsage:
    period_start: date
    period_end: date
    used: int
    outstanding: int
    cap: int | None
    mode: str | None

    @property
    def total(self) -> int:
        return self.used + self.outstanding

    @property
    def percent(self) -> int | None:
        return None if not self.cap else min(100, self.total * 100 // self.cap)


def cap_period(allocation_start: date, at: datetime) -> tuple[date, date]:
    """The 12-month cap year (from the allocation's start date, yearly) that contains ``at``."""
    today = at.astimezone(UTC).date()
    if today < allocation_start:
        return allocation_start, allocation_start + relativedelta(years=1)
    # Each cap year is counted from the allocation's start (29 Feb gives 28 Feb, then 29 Feb again in a
    # leap year), never from the previous cap year's end.
    years = relativedelta(today, allocation_start).years
    while allocation_start + relativedelta(years=years + 1) <= today:
        years += 1
    while years > 0 and allocation_start + relativedelta(years=years) > today:
        years -= 1
    return allocation_start + relativedelta(years=years), allocation_start + relativedelta(years=years + 1)


def client_usage(client: Client, at: datetime | None = None) -> ClientUsage:
    """What ``client`` consumed in its current cap year (UTC days) and what it has reserved now."""
    at = (at or timezone.now()).astimezone(UTC)
    client = Client.objects.select_related("allocation").get(pk=client.pk)
    return client_usages([client], at)[client.pk]


def client_usages(clients: list[Client], now: datetime) -> dict[int, ClientUsage]:
    """What each client consumed in its current cap year (UTC days) and has reserved now, in two queries.

    ``clients`` should come with ``select_related("allocation")``. Each client's cap year differs, so the
    consumption is summed with one condition per client in a single grouped query.
    """
    if not clients:
        return {}
    periods: dict[int, tuple[date, date, ClientAllocation | None]] = {}
    for client in clients:
        allocation: ClientAllocation | None = getattr(client, "allocation", None)
        if allocation is not None:
            start, end = cap_period(allocation.period_start, now)
        else:
            start, end = date(now.year, 1, 1), date(now.year + 1, 1, 1)
        periods[client.pk] = (start, end, allocation)

    def moment(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=now.tzinfo)

    condition = functools.reduce(
        operator.or_,
        (
            Q(client_id=pk, created_at__gte=moment(start), created_at__lt=moment(end))
            for pk, (start, end, _allocation) in periods.items()
        ),
    )
    used = dict(
        CreditEntry.objects.filter(condition, kind=CreditEntry.Kind.CONSUME)
        .values("client_id")
        .annotate(n=Sum("emails"))
        .values_list("client_id", "n")
    )
    outstanding = dict(
        Reservation.objects.filter(client_id__in=periods)
        .values("client_id")
        .annotate(n=Sum(F("quantity") - F("consumed") - F("released")))
        .values_list("client_id", "n")
    )
    return {
        pk: ClientUsage(
            period_start=start,
            period_end=end,
            used=int(used.get(pk) or 0),
            outstanding=int(outstanding.get(pk) or 0),
            cap=allocation.yearly_cap if allocation else None,
            mode=allocation.mode if allocation else None,
        )
        for pk, (start, end, allocation) in periods.items()
    }


def set_client_cap(client: Client, yearly_cap: int, mode: str, period_start: date) -> ClientAllocation:
    """Give a client a yearly cap or change it. A changed cap is a new promise: the owners are warned
    again when a soft cap is reached; saving it unchanged keeps the record of the warning."""
    allocation = ClientAllocation.objects.filter(client=client).first() or ClientAllocation(client=client)
    if (allocation.yearly_cap, allocation.mode, allocation.period_start) != (yearly_cap, mode, period_start):
        allocation.warned_period_start = None
    allocation.yearly_cap, allocation.mode, allocation.period_start = yearly_cap, mode, period_start
    allocation.save()
    return allocation


def remove_client_cap(client: Client) -> None:
    ClientAllocation.objects.filter(client=client).delete()


def update_overage_settings(organisation: Organisation, allow_overage: bool, monthly_limit: Decimal | None) -> None:
    """Change only the settings, under the credit lock, never the balances a worker may be moving."""
    with transaction.atomic():
        account = lock_credit_account(organisation)
        account.allow_overage = allow_overage
        account.monthly_overage_limit = monthly_limit
        account.save(update_fields=["allow_overage", "monthly_overage_limit"])


def sending_account_usage(sending_account: SendingAccount, start: datetime, end: datetime) -> int:
    """E-mails consumed by one sending account in ``[start, end)`` (from the ledger)."""
    total = CreditEntry.objects.filter(
        sending_account=sending_account, kind=Kind.CONSUME, created_at__gte=start, created_at__lt=end
    ).aggregate(n=Sum("emails"))["n"]
    return int(total or 0)


@dataclass
class OverageCharge:
    price_per_1000: Decimal
    emails: int
    amount: Decimal


def overage_charges(organisation: Organisation, start: datetime, end: datetime) -> list[OverageCharge]:
    """Overage consumed in ``[start, end)``: one line per price, each priced with :func:`overage_amount`."""
    rows = (
        CreditEntry.objects.filter(
            organisation=organisation,
            subscription__isnull=True,
            kind=Kind.CONSUME,
            created_at__gte=start,
            created_at__lt=end,
        )
        .values("price_per_1000")
        .annotate(n=Sum("emails"))
        .order_by("price_per_1000")
    )
    return [
        OverageCharge(row["price_per_1000"], int(row["n"]), overage_amount(int(row["n"]), row["price_per_1000"]))
        for row in rows
    ]


# --- reservations -------------------------------------------------------------------------


def reserve(
    organisation: Organisation,
    quantity: int,
    *,
    client: Client | None = None,
    sending_account: SendingAccount | None = None,
    promotional: bool = True,
    purpose: str = "",
    at: datetime | None = None,
) -> Reservation:
    """Set aside ``quantity`` credits atomically, or refuse with a clear reason.

    1. Lock the organisation's credit account (serialises concurrent reservations).
    2. Refuse if the sending account's standing forbids this kind of mail.
    3. Refuse if a hard client cap would be exceeded.
    4. Draw from the active terms, the one that ends first first.
    5. Take the rest as overage if allowed and within the monthly limit; else refuse.
    """
    if quantity <= 0:
        raise ValueError("quantity must be positive")
    at = at or timezone.now()
    if client is None and sending_account is not None and sending_account.client_id:
        client = sending_account.client
    _check_tenancy(organisation, client, sending_account)
    with transaction.atomic():
        account = lock_credit_account(organisation)
        if sending_account is not None:
            _check_standing(sending_account, promotional)
        if client is not None:
            _check_client_cap(client, quantity, at)
        terms = list(active_terms(organisation, at).select_for_update())
        if not terms:
            raise CreditRefused(
                CreditRefused.Code.NO_PLAN,
                _("There is no active plan. Order a plan on the Plan & usage page to send e-mail."),
            )
        available_before = sum(t.available for t in terms)
        reservation = Reservation.objects.create(
            organisation=organisation,
            client=client,
            sending_account=sending_account,
            purpose=purpose[:200],
            quantity=quantity,
            created_at=at,
        )
        remaining = quantity
        position = 0
        for term in terms:
            take = min(term.available, remaining)
            if take <= 0:
                continue
            ReservationPart.objects.create(reservation=reservation, subscription=term, quantity=take, position=position)
            _record(account, Kind.RESERVE, take, subscription=term, reservation=reservation, at=at)
            position += 1
            remaining -= take
            if not remaining:
                break
        if remaining:
            price = overage_price(terms)
            assert price is not None
            _check_overage(account, remaining, price, available=available_before, requested=quantity, at=at)
            ReservationPart.objects.create(
                reservation=reservation, subscription=None, price_per_1000=price, quantity=remaining, position=position
            )
            _record(account, Kind.RESERVE, remaining, reservation=reservation, price_per_1000=price, at=at)
        if client is not None:
            _maybe_warn_soft_cap(client, at)
    return reservation


def _check_tenancy(organisation: Organisation, client: Client | None, sending_account: SendingAccount | None) -> None:
    """The client and the sending account must belong to the organisation (and to each other)."""
    if client is not None and client.organisation_id != organisation.pk:
        raise ServiceError(_("This client does not belong to the organisation."))
    if sending_account is not None:
        if sending_account.organisation_id != organisation.pk:
            raise ServiceError(_("This sending account does not belong to the organisation."))
        if sending_account.client_id and client is not None and sending_account.client_id != client.pk:
            raise ServiceError(_("This sending account belongs to another client."))


def _check_standing(sending_account: SendingAccount, promotional: bool) -> None:
    standing = SendingAccount.Standing
    if sending_account.standing == standing.SUSPENDED:
        raise CreditRefused(
            CreditRefused.Code.STANDING,
            _("Sending account “%(name)s” is suspended; the XES team must lift the suspension first.")
            % {"name": sending_account.name},
        )
    if sending_account.standing == standing.PROBATION and promotional:
        raise CreditRefused(
            CreditRefused.Code.STANDING,
            _("Sending account “%(name)s” is on probation: promotional e-mail is paused, transactional continues.")
            % {"name": sending_account.name},
        )


def _check_client_cap(client: Client, quantity: int, at: datetime) -> None:
    usage = client_usage(client, at)
    if usage.cap is None or usage.mode != ClientAllocation.Mode.HARD:
        return
    if usage.total + quantity > usage.cap:
        raise CreditRefused(
            CreditRefused.Code.CLIENT_CAP,
            _(
                "Client “%(client)s” would exceed its yearly cap: %(used)s of %(cap)s e-mails used or reserved "
                "until %(end)s, %(wanted)s more requested."
            )
            % {
                "client": client.name,
                "used": f"{usage.total:,}",
                "cap": f"{usage.cap:,}",
                "end": usage.period_end.isoformat(),
                "wanted": f"{quantity:,}",
            },
        )


def _check_overage(
    account: CreditAccount, wanted: int, price: Decimal, *, available: int, requested: int, at: datetime
) -> None:
    """``wanted`` overage e-mails are needed for a request of ``requested`` with ``available`` left."""
    if not account.allow_overage:
        raise CreditRefused(
            CreditRefused.Code.INSUFFICIENT,
            _(
                "Not enough credits: %(available)s e-mails left in your plans, %(requested)s requested, "
                "and overage is switched off in your settings."
            )
            % {"available": f"{available:,}", "requested": f"{requested:,}"},
        )
    limit = overage_limit_emails(account, price)
    if limit is None:
        return
    already = overage_used_in_month(account.organisation, at) + account.overage_reserved
    if already + wanted > limit:
        raise CreditRefused(
            CreditRefused.Code.OVERAGE_LIMIT,
            _(
                "This would exceed your monthly overage limit of $%(limit)s (%(emails)s e-mails at $%(price)s "
                "per 1,000); %(already)s overage e-mails are already used or reserved this month."
            )
            % {
                "limit": account.monthly_overage_limit,
                "emails": f"{limit:,}",
                "price": price,
                "already": f"{already:,}",
            },
        )


def consume(reservation: Reservation, quantity: int, at: datetime | None = None) -> None:
    """Mark ``quantity`` reserved credits as used (the provider accepted the messages).

    Included credits are used before overage.
    """
    _settle(reservation, quantity, Kind.CONSUME, at)


def release(reservation: Reservation, quantity: int | None = None, at: datetime | None = None) -> int:
    """Give back reserved credits that were finally not used (all outstanding if ``quantity`` is None).

    Overage is released before included credits; credits released into an expired term expire at once.
    """
    return _settle(reservation, quantity, Kind.RELEASE, at)


def _settle(reservation: Reservation, quantity: int | None, kind: str, at: datetime | None) -> int:
    at = at or timezone.now()
    with transaction.atomic():
        account = lock_credit_account(reservation.organisation)
        locked = Reservation.objects.select_for_update().get(pk=reservation.pk)
        wanted = locked.outstanding if quantity is None else quantity
        if wanted < 0 or wanted > locked.outstanding:
            raise ServiceError(
                _("Cannot settle %(n)s e-mails: only %(left)s are still reserved.")
                % {"n": wanted, "left": locked.outstanding}
            )
        parts = list(locked.parts.select_for_update())
        overage_last = sorted(parts, key=lambda p: (p.subscription_id is None, p.position))
        order = overage_last if kind == Kind.CONSUME else list(reversed(overage_last))
        remaining = wanted
        for part in order:
            take = min(part.outstanding, remaining)
            if take <= 0:
                continue
            term = part.subscription
            if term is not None:
                term = Subscription.objects.select_for_update().get(pk=term.pk)
            _record(
                account, kind, take, subscription=term, reservation=locked, price_per_1000=part.price_per_1000, at=at
            )
            if kind == Kind.RELEASE and term is not None and term.expired_at is not None:
                _record(account, Kind.EXPIRE, take, subscription=term, reason="released after the term ended", at=at)
            if kind == Kind.CONSUME:
                part.consumed += take
            else:
                part.released += take
            part.save(update_fields=["consumed", "released"])
            remaining -= take
            if not remaining:
                break
        if kind == Kind.CONSUME:
            locked.consumed += wanted
        else:
            locked.released += wanted
        locked.save(update_fields=["consumed", "released"])
        reservation.consumed, reservation.released = locked.consumed, locked.released
        if kind == Kind.CONSUME and wanted:
            _maybe_notify_pool_level(account, at)
    return wanted


# --- terms: orders, grants, expiry --------------------------------------------------------


def has_ever_had_a_plan(organisation: Organisation) -> bool:
    return Subscription.objects.filter(organisation=organisation).exists()


def plan_eligibility(organisation: Organisation, plan: Plan, at: datetime | None = None) -> str | None:
    """None if the organisation may order ``plan`` now (or at ``at``), else the reason it may not."""
    at = at or timezone.now()
    e = Plan.Eligibility
    if plan.eligibility == e.CUSTOM:
        return _(
            "Custom plans are arranged by the XES team. Contact us if you send more than 30 million e-mails a year."
        )
    if plan.eligibility == e.CLOUD_EMEDIA:
        return _("STARTER is included automatically for cloud e-media customers and cannot be ordered.")
    if not plan.orderable:
        return _("This plan cannot be ordered in the portal.")
    if plan.eligibility == e.NEW_CROSS_MEDIA:
        if not organisation.has_cross_media_configuration:
            return _("BASIC is only for customers with an XMPie cross-media configuration.")
        if (
            has_ever_had_a_plan(organisation)
            or Order.objects.filter(organisation=organisation, plan__eligibility=e.NEW_CROSS_MEDIA)
            .exclude(status__in=[Order.Status.REJECTED, Order.Status.CANCELLED])
            .exists()
        ):
            return _("BASIC is only for new customers who never had an XES plan, and cannot be renewed.")
        if term_end(organisation.created_at) <= at:
            return _("BASIC is valid for 12 months from registration, and that time is over.")
    elif not plan.renewable and Subscription.objects.filter(organisation=organisation, plan=plan).exists():
        return _("This plan cannot be renewed.")
    if Order.objects.filter(organisation=organisation, plan=plan, status=Order.Status.PENDING).exists():
        return _("You already ordered this plan; the XES team will confirm it shortly.")
    return None


def order_plan(organisation: Organisation, plan: Plan, user: User, note: str = "") -> Order:
    reason = plan_eligibility(organisation, plan)
    if reason:
        raise ServiceError(reason)
    return Order.objects.create(organisation=organisation, plan=plan, requested_by=user, note=note)


def order_addon(organisation: Organisation, product: AddOnProduct, domain: str, user: User, note: str = "") -> Order:
    if not product.orderable:
        raise ServiceError(_("This add-on cannot be ordered in the portal."))
    name = normalise_domain(domain)
    if active_addon(organisation, product.kind, name) is not None:
        raise ServiceError(_("%(domain)s already has the %(addon)s.") % {"domain": name, "addon": product.name})
    if Order.objects.filter(
        organisation=organisation, addon=product, domain=name, status=Order.Status.PENDING
    ).exists():
        raise ServiceError(_("You already ordered this add-on for %(domain)s.") % {"domain": name})
    return Order.objects.create(organisation=organisation, addon=product, domain=name, requested_by=user, note=note)


def cancel_order(order: Order, user: User) -> None:
    updated = Order.objects.filter(pk=order.pk, status=Order.Status.PENDING).update(
        status=Order.Status.CANCELLED, decided_at=timezone.now(), decided_by=user
    )
    if not updated:
        raise ServiceError(_("Only orders that wait for approval can be cancelled."))


def approve_order(order: Order, by: User, at: datetime | None = None) -> Subscription | AddOnSubscription:
    """The XES team accepts an order: the term starts (or follows the current one of the same plan)."""
    at = at or timezone.now()
    with transaction.atomic():
        claimed = Order.objects.filter(pk=order.pk, status=Order.Status.PENDING).update(
            status=Order.Status.APPROVED, decided_by=by, decided_at=at
        )
        if not claimed:
            raise ServiceError(_("This order was already decided."))
        order.refresh_from_db()
        if order.plan is not None:
            reason = _eligibility_at_approval(order)
            if reason:
                raise ServiceError(reason)
            result: Subscription | AddOnSubscription = grant_plan(
                order.organisation, order.plan, origin=Subscription.Origin.ORDER, order=order, by=by, at=at
            )
        else:
            assert order.addon is not None
            start = _next_start(
                AddOnSubscription.objects.filter(
                    organisation=order.organisation, product=order.addon, domain=order.domain
                ),
                at,
            )
            result = AddOnSubscription.objects.create(
                organisation=order.organisation,
                product=order.addon,
                domain=order.domain,
                order=order,
                starts_at=start,
                ends_at=term_end(start),
            )
        _notify_owners(order.organisation, "order_decided", order=order, approved=True)
    return result


def _eligibility_at_approval(order: Order) -> str | None:
    plan = order.plan
    assert plan is not None
    if plan.eligibility == Plan.Eligibility.NEW_CROSS_MEDIA:
        if not order.organisation.has_cross_media_configuration:
            return _("BASIC is only for customers with an XMPie cross-media configuration.")
        if has_ever_had_a_plan(order.organisation):
            return _("BASIC is only for new customers who never had an XES plan, and cannot be renewed.")
    return None


def reject_order(order: Order, by: User, reason: str) -> None:
    if not reason.strip():
        raise ServiceError(_("Say why the order is rejected; the customer sees it."))
    updated = Order.objects.filter(pk=order.pk, status=Order.Status.PENDING).update(
        status=Order.Status.REJECTED, decided_by=by, decided_at=timezone.now(), decision_note=reason.strip()
    )
    if not updated:
        raise ServiceError(_("This order was already decided."))
    order.refresh_from_db()
    _notify_owners(order.organisation, "order_decided", order=order, approved=False)


def _next_start(terms: QuerySet, at: datetime) -> datetime:  # type: ignore[type-arg]
    """A renewal follows the running term of the same product without a gap or overlap."""
    running = terms.filter(starts_at__lte=at, ends_at__gt=at).order_by("-ends_at").first()
    queued = terms.filter(starts_at__gt=at).order_by("-ends_at").first()
    latest = queued or running
    return latest.ends_at if latest is not None else at


def grant_plan(
    organisation: Organisation,
    plan: Plan,
    *,
    origin: str,
    order: Order | None = None,
    by: User | None = None,
    at: datetime | None = None,
) -> Subscription:
    """Start a 12-month term of ``plan`` and grant its included e-mails in the ledger."""
    at = at or timezone.now()
    if plan.is_custom and plan.organisation_id != organisation.pk:
        raise ServiceError(_("This custom plan belongs to another organisation."))
    with transaction.atomic():
        account = lock_credit_account(organisation)
        if plan.eligibility == Plan.Eligibility.NEW_CROSS_MEDIA:
            # BASIC is valid for 12 months from registration (the FAQ), not from the order.
            start = organisation.created_at
            if term_end(start) <= at:
                raise ServiceError(_("BASIC is valid for 12 months from registration, and that time is over."))
        else:
            # Under the lock, so that two grants of the same plan queue one after the other.
            start = _next_start(Subscription.objects.filter(organisation=organisation, plan=plan), at)
        term = Subscription.objects.create(
            organisation=organisation,
            plan=plan,
            origin=origin,
            order=order,
            starts_at=start,
            ends_at=term_end(start),
            included_emails=plan.emails_per_year,
            price_per_1000=plan.price_per_1000,
        )
        _record(account, Kind.GRANT, plan.emails_per_year, subscription=term, reason=str(plan), by=by, at=at)
    return term


def adjust_credits(term: Subscription, emails_delta: int, reason: str, by: User) -> CreditEntry:
    """The XES team adds (positive) or removes (negative) e-mails of a term, with a reason."""
    if not reason.strip():
        raise ServiceError(_("A reason is required for every adjustment."))
    if emails_delta == 0:
        raise ServiceError(_("Enter a number of e-mails other than zero."))
    with transaction.atomic():
        account = lock_credit_account(term.organisation)
        locked = Subscription.objects.select_for_update().get(pk=term.pk)
        if locked.expired_at is not None:
            raise ServiceError(_("This term has ended; adjust a running term instead."))
        if locked.available + emails_delta < 0:
            raise ServiceError(
                _("Cannot remove %(n)s e-mails: only %(available)s are available in this term.")
                % {"n": f"{-emails_delta:,}", "available": f"{locked.available:,}"}
            )
        entry = _record(account, Kind.ADJUST, emails_delta, subscription=locked, reason=reason.strip(), by=by)
    term.refresh_from_db()
    return entry


def expire_due_terms(at: datetime | None = None) -> int:
    """Expire what is left of every term that has ended; idempotent. Returns the number expired."""
    at = at or timezone.now()
    count = 0
    due = Subscription.objects.filter(expired_at__isnull=True, ends_at__lte=at).values_list("pk", "organisation_id")
    for pk, organisation_id in list(due):
        with transaction.atomic():
            account = lock_credit_account(Organisation(pk=organisation_id))
            term = Subscription.objects.select_for_update().select_related("plan", "organisation").get(pk=pk)
            if term.expired_at is not None:
                continue
            _expire_term(account, term, at, "term ended")
            count += 1
    return count


def _expire_term(account: CreditAccount, term: Subscription, at: datetime, reason: str) -> int:
    """Expire what is left of a locked term (no rollover) and tell the owners after commit.

    ``reason`` is stored in the ledger in English, whatever language the request that caused it used.
    """
    left = term.available
    if left:
        _record(account, Kind.EXPIRE, left, subscription=term, reason=reason, at=at)
    term.expired_at = at
    term.save(update_fields=["expired_at"])
    _notify_owners(term.organisation, "term_expired", term=term, expired=left)
    return left


def end_term_early(term: Subscription, at: datetime | None = None) -> None:
    """End a term now (STARTER when cloud e-media stops); what is left expires at once.

    A term that has not started yet is cut to one second, so that it still ends after it starts.
    Only this term is touched (not other due terms).
    """
    at = at or timezone.now()
    with transaction.atomic():
        account = lock_credit_account(term.organisation)
        locked = Subscription.objects.select_for_update().select_related("plan", "organisation").get(pk=term.pk)
        if locked.expired_at is None:
            end = max(at, locked.starts_at + timedelta(seconds=1))
            if locked.ends_at > end:
                locked.ends_at, locked.ended_early_at = end, at
                locked.save(update_fields=["ends_at", "ended_early_at"])
            _expire_term(account, locked, at, "ended early")
    term.refresh_from_db()


def _starter_plan() -> Plan | None:
    return Plan.objects.filter(eligibility=Plan.Eligibility.CLOUD_EMEDIA).order_by("pk").first()


def _grant_starter(
    account: CreditAccount, organisation: Organisation, starter: Plan, start: datetime, at: datetime
) -> Subscription:
    term = Subscription.objects.create(
        organisation=organisation,
        plan=starter,
        origin=Subscription.Origin.STARTER,
        starts_at=start,
        ends_at=term_end(start),
        included_emails=starter.emails_per_year,
        price_per_1000=starter.price_per_1000,
    )
    _record(account, Kind.GRANT, starter.emails_per_year, subscription=term, reason=str(starter), at=at)
    return term


def sync_starter(organisation: Organisation, at: datetime | None = None) -> Subscription | None:
    """STARTER follows the cloud e-media flag: granted and renewed while set, ended when cleared.

    While the flag is set, the next term is granted up to :data:`STARTER_RENEW_AHEAD` before the
    running one ends and starts exactly at its end, so the daily job leaves no gap. A term that
    ended less than :data:`STARTER_RENEW_GRACE` ago (the job did not run) is followed seamlessly
    too. When the flag is cleared, the running and any queued STARTER terms end at once.
    Returns the running STARTER term (None when the flag is cleared).
    """
    at = at or timezone.now()
    starter = _starter_plan()
    if starter is None:
        return None
    with transaction.atomic():
        account = lock_credit_account(organisation)
        all_terms = Subscription.objects.filter(organisation=organisation, plan=starter)
        current = all_terms.filter(expired_at__isnull=True, ends_at__gt=at).order_by("starts_at", "pk")
        if not organisation.is_cloud_emedia_customer:
            for term in current:
                end_term_early(term, at)
            return None
        running = current.filter(starts_at__lte=at).first()
        if running is None:
            last = all_terms.filter(ends_at__lte=at).order_by("-ends_at").first()
            seamless = last is not None and last.ended_early_at is None and at - last.ends_at < STARTER_RENEW_GRACE
            running = _grant_starter(account, organisation, starter, last.ends_at if seamless and last else at, at)
        if running.ends_at - at <= STARTER_RENEW_AHEAD and not current.filter(starts_at__gte=running.ends_at).exists():
            _grant_starter(account, organisation, starter, running.ends_at, at)
        return running


def sync_all_starters(at: datetime | None = None) -> int:
    """Daily: renew STARTER for every cloud e-media customer, end it for the others.

    Returns the number of organisations whose STARTER terms changed.
    """
    at = at or timezone.now()
    changed = 0
    candidates = Organisation.objects.filter(
        Q(is_cloud_emedia_customer=True)
        | Q(
            subscriptions__plan__eligibility=Plan.Eligibility.CLOUD_EMEDIA,
            subscriptions__ends_at__gt=at,
            subscriptions__expired_at__isnull=True,
        )
    ).distinct()

    def snapshot(organisation: Organisation) -> list[tuple[int, datetime, datetime | None]]:
        return list(
            Subscription.objects.filter(
                organisation=organisation, plan__eligibility=Plan.Eligibility.CLOUD_EMEDIA
            ).values_list("pk", "ends_at", "expired_at")
        )

    for organisation in candidates:
        before = snapshot(organisation)
        sync_starter(organisation, at)
        changed += before != snapshot(organisation)
    return changed


# --- entitlements -------------------------------------------------------------------------


def active_addon(
    organisation: Organisation, kind: str, domain: str, at: datetime | None = None
) -> AddOnSubscription | None:
    at = at or timezone.now()
    return (
        AddOnSubscription.objects.filter(
            organisation=organisation, product__kind=kind, domain=domain, starts_at__lte=at, ends_at__gt=at
        )
        .order_by("-ends_at")
        .first()
    )


# --- rebuilding ---------------------------------------------------------------------------


@dataclass
class Balances:
    available: int = 0
    reserved: int = 0
    used: int = 0


def balances_from_ledger(organisation: Organisation) -> tuple[dict[int, Balances], Balances]:
    """Recompute every term's balances and the overage balances from the ledger alone."""
    terms: dict[int, Balances] = {}
    overage = Balances()
    rows = (
        CreditEntry.objects.filter(organisation=organisation)
        .values("subscription_id", "kind")
        .annotate(n=Sum("emails"))
    )
    for row in rows:
        target = overage if row["subscription_id"] is None else terms.setdefault(row["subscription_id"], Balances())
        d_available, d_reserved, d_used = EFFECTS[row["kind"]]
        target.available += d_available * row["n"]
        target.reserved += d_reserved * row["n"]
        target.used += d_used * row["n"]
    return terms, overage


def rebuild_balances(organisation: Organisation) -> list[str]:
    """Rewrite the stored balances from the ledger; returns what differed (empty when all agreed)."""
    differences: list[str] = []
    with transaction.atomic():
        account = lock_credit_account(organisation)
        terms, overage = balances_from_ledger(organisation)
        for term in Subscription.objects.filter(organisation=organisation).select_for_update():
            expected = terms.get(term.pk, Balances())
            stored = Balances(term.available, term.reserved, term.used)
            if stored != expected:
                differences.append(f"term {term.pk}: stored {stored}, ledger {expected}")
                term.available, term.reserved, term.used = expected.available, expected.reserved, expected.used
                term.save(update_fields=["available", "reserved", "used"])
        if (account.overage_reserved, account.overage_used) != (overage.reserved, overage.used):
            differences.append(
                f"overage: stored reserved={account.overage_reserved} used={account.overage_used}, "
                f"ledger reserved={overage.reserved} used={overage.used}"
            )
            account.overage_reserved, account.overage_used = overage.reserved, overage.used
            account.save(update_fields=["overage_reserved", "overage_used"])
    return differences


# --- notifications ------------------------------------------------------------------------


def _owners(organisation: Organisation) -> list[str]:
    return list(
        Membership.objects.filter(organisation=organisation, role=Membership.Role.OWNER).values_list(
            "user__email", flat=True
        )
    )


def _notify_owners(organisation: Organisation, message: str, **context: object) -> None:
    recipients = _owners(organisation)
    sender = getattr(emails, message)
    transaction.on_commit(lambda: [sender(to, organisation_name=organisation.name, **context) for to in recipients])


def _maybe_notify_pool_level(account: CreditAccount, at: datetime) -> None:
    """E-mail the owners once when the pool reaches 80% and once at 100% (per set of active terms)."""
    current = pool(account.organisation, at)
    if not current.included:
        return
    before = (account.notified_pool_key, account.notified_level)
    if account.notified_pool_key != current.key:
        account.notified_pool_key, account.notified_level = current.key, 0
    # The pool is what the active terms hold (included e-mails plus adjustments); used is what was consumed.
    used = current.used
    total = current.available + current.reserved + current.used
    percent = used * 100 // total if total > 0 else 100
    reached = max((level for level in POOL_WARNING_LEVELS if percent >= level), default=0)
    if reached > account.notified_level:
        account.notified_level = reached
        _notify_owners(
            account.organisation,
            "pool_level",
            level=reached,
            used=used,
            included=total,
        )
    if (account.notified_pool_key, account.notified_level) != before:
        account.save(update_fields=["notified_level", "notified_pool_key"])


def _maybe_warn_soft_cap(client: Client, at: datetime) -> None:
    allocation = ClientAllocation.objects.filter(client=client, mode=ClientAllocation.Mode.SOFT).first()
    if allocation is None:
        return
    usage = client_usage(client, at)
    assert usage.cap is not None
    if usage.total < usage.cap or allocation.warned_period_start == usage.period_start:
        return
    allocation.warned_period_start = usage.period_start
    allocation.save(update_fields=["warned_period_start"])
    _notify_owners(
        client.organisation,
        "client_cap_reached",
        client_name=client.name,
        used=usage.total,
        cap=usage.cap,
    )


__all__ = [
    "CUSTOM_PLAN_MIN_EMAILS",
    "CreditRefused",
    "Pool",
    "active_addon",
    "active_terms",
    "adjust_credits",
    "approve_order",
    "cancel_order",
    "client_usage",
    "consume",
    "expire_due_terms",
    "grant_plan",
    "order_addon",
    "order_plan",
    "overage_charges",
    "overage_limit_emails",
    "overage_price",
    "plan_eligibility",
    "pool",
    "rebuild_balances",
    "reject_order",
    "release",
    "reserve",
    "sending_account_usage",
    "sync_all_starters",
    "sync_starter",
]
