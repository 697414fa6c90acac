"""The Plan & usage page: the pool, terms, forecast, usage per month and per client, the catalogue
with the order flow, add-ons, orders, overage settings and client caps.

Views parse input, call :mod:`plans.services` and render. Who sees what:

- everybody in the organisation sees the pool and the usage; client-users see only their own
  client's usage and nothing organisation-wide (no pool, no money, no orders);
- owners and admins (``Perm.VIEW_BILLING``) also see prices, orders and the overage settings;
- only owners (``Perm.MANAGE_PLANS``) order, cancel, change overage settings and client caps.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from dateutil.relativedelta import relativedelta
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Q, Sum
from django.db.models.functions import TruncMonth
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.constants import Perm
from accounts.decorators import membership_required
from accounts.http import AuthedRequest
from accounts.models import Client, Membership
from accounts.services import ServiceError
from plans import services
from plans.forms import AddOnOrderForm, ClientCapForm, OverageSettingsForm
from plans.models import (
    AddOnProduct,
    AddOnSubscription,
    ClientAllocation,
    CreditAccount,
    CreditEntry,
    Order,
    Plan,
    Subscription,
    overage_amount,
)
from xes_portal.lib.domains import domain_display
from xes_portal.lib.tenancy import get_for_membership

PACE_DAYS = 30  # the forecast extrapolates the consumption of this many past days
CHART_MONTHS = 12
ORDERS_SHOWN = 50
OVERAGE_EXAMPLE_EMAILS = 1_234  # the worked example next to the overage rule


# --- the page -----------------------------------------------------------------------------


@membership_required()
def overview(request: AuthedRequest) -> HttpResponse:
    return _render_overview(request)


def _render_overview(
    request: AuthedRequest,
    *,
    overage_form: OverageSettingsForm | None = None,
    addon_form: AddOnOrderForm | None = None,
    cap_form: tuple[int, ClientCapForm] | None = None,
    status: int = 200,
) -> HttpResponse:
    """Render the page; a form that failed validation is passed in to show its errors in place."""
    m = request.membership
    now = timezone.now()
    context: dict[str, Any] = {
        "client_rows": _client_rows(m, now, cap_form),
        "chart": _usage_chart(m, now),
        "cap_form_errors": cap_form is not None,
    }
    if not m.is_client_user:
        context.update(_pool_context(m, now))
    if m.can(Perm.VIEW_BILLING):
        context.update(_billing_context(m, context["pool"], now, overage_form, addon_form))
    return render(request, "plans/overview.html", context, status=status)


def _pool_context(m: Membership, now: datetime) -> dict[str, Any]:
    """The organisation's pool, its terms (running and upcoming) and the forecast."""
    organisation = m.organisation
    pool = services.pool(organisation, now)
    upcoming = list(Subscription.objects.for_membership(m).filter(starts_at__gt=now).select_related("plan"))
    since = now - timedelta(days=PACE_DAYS)
    consumed = CreditEntry.objects.for_membership(m).filter(kind=CreditEntry.Kind.CONSUME, created_at__gte=since)
    per_day = Decimal(consumed.aggregate(n=Sum("emails"))["n"] or 0) / PACE_DAYS
    return {
        "pool": pool,
        "bar": _pool_bar(pool),
        "terms": [_term_row(term, now) for term in pool.terms],
        "upcoming": upcoming,
        "forecast": forecast(pool.terms, per_day, now),
    }


def _billing_context(
    m: Membership,
    pool: services.Pool,
    now: datetime,
    overage_form: OverageSettingsForm | None,
    addon_form: AddOnOrderForm | None,
) -> dict[str, Any]:
    """Prices, the catalogue, orders, add-ons and the overage settings (owners and admins)."""
    organisation = m.organisation
    account = CreditAccount.objects.for_membership(m).first() or CreditAccount(organisation=organisation)
    plans = Plan.objects.filter(
        Q(orderable=True, organisation__isnull=True)
        | Q(eligibility=Plan.Eligibility.CLOUD_EMEDIA)
        | Q(organisation=organisation)
    )
    catalogue = [(plan, services.plan_eligibility(organisation, plan)) for plan in plans]
    orders = list(Order.objects.for_membership(m).select_related("plan", "addon")[:ORDERS_SHOWN])
    for order in orders:
        order.domain_shown = domain_display(order.domain)  # type: ignore[attr-defined]
    addons = list(
        AddOnSubscription.objects.for_membership(m)
        .filter(ends_at__gt=now)
        .select_related("product")
        .order_by("domain", "product__kind", "starts_at")
    )
    for addon in addons:
        addon.domain_shown = domain_display(addon.domain)  # type: ignore[attr-defined]
    price = pool.overage_price
    overage_emails = services.overage_used_in_month(organisation, now) if price is not None else 0
    example_price = price if price is not None else min((p.price_per_1000 for p, _r in catalogue), default=None)
    return {
        "account": account,
        "overage_form": overage_form or OverageSettingsForm(instance=account, prefix="overage"),
        "overage": {
            "price": price,
            "emails": overage_emails,
            "amount": overage_amount(overage_emails, price) if price is not None else None,
            "limit_emails": services.overage_limit_emails(account, price) if price is not None else None,
            "example_emails": OVERAGE_EXAMPLE_EMAILS,
            "example_price": example_price,
            "example_amount": (
                overage_amount(OVERAGE_EXAMPLE_EMAILS, example_price) if example_price is not None else None
            ),
        },
        "catalogue": catalogue,
        "addon_products": list(AddOnProduct.objects.filter(orderable=True)),
        "addon_form": addon_form or AddOnOrderForm(prefix="addon"),
        "orders": orders,
        "addons": addons,
    }


@dataclass
class Bar:
    """The stacked pool bar. Widths are CSS percentages as plain strings (never localised)."""

    total: int  # what the active terms hold: included e-mails plus the XES team's adjustments
    adjusted: int  # the adjustments alone (0 when none)
    used: str
    reserved: str
    used_percent: int
    level: str  # "ok", "warning" (80% or more), "full"


def _percent(part: int, whole: int) -> Decimal:
    if whole <= 0:
        return Decimal(0)
    return min(Decimal(100), Decimal(part) * 100 / whole)


def _pool_bar(pool: services.Pool) -> Bar:
    total = pool.available + pool.reserved + pool.used
    used = _percent(pool.used, total)
    reserved = min(_percent(pool.reserved, total), Decimal(100) - used)
    level = "full" if used + reserved >= 100 else "warning" if used + reserved >= 80 else "ok"
    return Bar(
        total=total,
        adjusted=total - pool.included,
        used=f"{used:.2f}",
        reserved=f"{reserved:.2f}",
        used_percent=int(used + reserved),
        level=level,
    )


def _term_row(term: Subscription, now: datetime) -> dict[str, Any]:
    return {"term": term, "days_left": max(0, (term.ends_at - now).days)}


@dataclass
class Forecast:
    """When the included e-mails run out at the recent pace (``runs_out``), or that they last."""

    per_day: Decimal
    runs_out: datetime | None
    lasts_until: datetime | None


def forecast(terms: list[Subscription], per_day: Decimal, now: datetime) -> Forecast | None:
    """Extrapolate the recent pace over the active terms, drawn in the order the ledger draws them.

    1. Walk the terms that end first first, starting now.
    2. Each term is drained at ``per_day`` from the moment the previous one ran out or ended;
       if it would last past its own end, what is left expires and the walk moves on at its end.
    3. The first moment the last term is drained is the run-out date; if none is, the e-mails
       last until the end of the last term.
    """
    if not terms:
        return None
    cursor = now
    for term in terms:
        cursor = max(cursor, term.starts_at)
        if term.available <= 0:
            continue
        if per_day <= 0:
            cursor = max(cursor, term.ends_at)
            continue
        drained = cursor + timedelta(days=float(Decimal(term.available) / per_day))
        cursor = min(drained, term.ends_at)
    last_end = max(term.ends_at for term in terms)
    if cursor < last_end and per_day > 0:
        return Forecast(per_day=per_day, runs_out=cursor, lasts_until=None)
    return Forecast(per_day=per_day, runs_out=None, lasts_until=last_end)


def _client_rows(m: Membership, now: datetime, cap_form: tuple[int, ClientCapForm] | None) -> list[dict[str, Any]]:
    """One row per client the membership may see: its usage this cap year, its cap and, for owners, a form."""
    clients = list(Client.objects.for_membership(m).select_related("allocation").order_by("name"))
    usages = services.client_usages(clients, now)
    manage = m.can(Perm.MANAGE_PLANS)
    rows = []
    for client in clients:
        usage = usages[client.pk]
        allocation: ClientAllocation | None = getattr(client, "allocation", None)
        form = None
        if manage:
            if cap_form is not None and cap_form[0] == client.pk:
                form = cap_form[1]
            else:
                form = ClientCapForm(instance=allocation, prefix=f"cap{client.pk}")
        percent = usage.percent
        level = "" if percent is None else "full" if percent >= 100 else "warning" if percent >= 80 else "ok"
        rows.append(
            {
                "client": client,
                "usage": usage,
                "allocation": allocation,
                "period_last": usage.period_end - timedelta(days=1),  # the end itself is exclusive
                "form": form,
                "form_open": form is not None and form.is_bound,
                "level": level,
            }
        )
    return rows


def _usage_chart(m: Membership, now: datetime) -> dict[str, Any]:
    """E-mails consumed per calendar month (UTC) over the last 12 months, included vs overage.

    Client-users get one series, their client's e-mails, without the organisation's split.
    """
    first = services.month_start(now) - relativedelta(months=CHART_MONTHS - 1)
    rows = (
        CreditEntry.objects.for_membership(m)
        .filter(kind=CreditEntry.Kind.CONSUME, created_at__gte=first)
        .annotate(month=TruncMonth("created_at", tzinfo=UTC))
        .values("month")
        .annotate(
            included=Sum("emails", filter=Q(subscription__isnull=False)),
            overage=Sum("emails", filter=Q(subscription__isnull=True)),
        )
        .order_by("month")
    )
    by_month = {row["month"].date(): row for row in rows}
    months = [(first + relativedelta(months=i)).date() for i in range(CHART_MONTHS)]
    included = [int(by_month.get(month, {}).get("included") or 0) for month in months]
    overage = [int(by_month.get(month, {}).get("overage") or 0) for month in months]
    labels = [formats.date_format(month, "M Y") for month in months]
    # Chart axis: the month, with the year under the first month and every January.
    axis = [
        [formats.date_format(month, "M"), str(month.year)]
        if i == 0 or month.month == 1
        else [formats.date_format(month, "M")]
        for i, month in enumerate(months)
    ]
    if m.is_client_user:
        series = [
            {"key": "total", "label": _("E-mails"), "data": [a + b for a, b in zip(included, overage, strict=True)]}
        ]
    else:
        series = [
            {"key": "included", "label": _("Included"), "data": included},
            {"key": "overage", "label": _("Overage"), "data": overage},
        ]
    table = [
        {"label": label, "values": [s["data"][i] for s in series]}  # type: ignore[index]
        for i, label in enumerate(labels)
    ]
    return {
        "data": {"labels": axis, "series": series},
        "table": table,
        "empty": not any(included) and not any(overage),
    }


# --- actions ------------------------------------------------------------------------------


@require_POST
@membership_required(Perm.MANAGE_PLANS)
def order_plan(request: AuthedRequest, plan_id: int) -> HttpResponse:
    organisation = request.membership.organisation
    # Custom plans of other organisations do not exist for this one.
    plan = get_object_or_404(
        Plan.objects.filter(Q(organisation__isnull=True) | Q(organisation=organisation)), pk=plan_id
    )
    try:
        services.order_plan(organisation, plan, request.user)
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            _("Thank you: your order of %(plan)s waits for the XES team's approval. We e-mail you when it is decided.")
            % {"plan": plan.name},
        )
    return redirect("plans_overview")


@require_POST
@membership_required(Perm.MANAGE_PLANS)
def order_addon(request: AuthedRequest) -> HttpResponse:
    form = AddOnOrderForm(request.POST, prefix="addon")
    if form.is_valid():
        product = form.cleaned_data["product"]
        try:
            order = services.order_addon(
                request.membership.organisation, product, form.cleaned_data["domain"], request.user
            )
        except (ServiceError, ValidationError) as exc:
            for message in getattr(exc, "messages", [str(exc)]):
                form.add_error(None, message)
        else:
            messages.success(
                request,
                _("Thank you: your order of the %(addon)s for %(domain)s waits for the XES team's approval.")
                % {"addon": product.name, "domain": domain_display(order.domain)},
            )
            return redirect("plans_overview")
    return _render_overview(request, addon_form=form, status=400)


@require_POST
@membership_required(Perm.MANAGE_PLANS)
def cancel_order(request: AuthedRequest, pk: int) -> HttpResponse:
    order = get_for_membership(Order.objects.select_related("plan", "addon"), request.membership, pk=pk)
    try:
        services.cancel_order(order, request.user)
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Your order was cancelled."))
    return redirect("plans_overview")


@require_POST
@membership_required(Perm.MANAGE_PLANS)
def overage_settings(request: AuthedRequest) -> HttpResponse:
    account, _created = CreditAccount.objects.get_or_create(organisation=request.membership.organisation)
    form = OverageSettingsForm(request.POST, instance=account, prefix="overage")
    if form.is_valid():
        services.update_overage_settings(
            request.membership.organisation,
            form.cleaned_data["allow_overage"],
            form.cleaned_data["monthly_overage_limit"],
        )
        messages.success(request, _("Overage settings saved."))
        return redirect("plans_overview")
    return _render_overview(request, overage_form=form, status=400)


@require_POST
@membership_required(Perm.MANAGE_PLANS)
def client_cap(request: AuthedRequest, client_id: int) -> HttpResponse:
    client = get_for_membership(Client.objects, request.membership, pk=client_id)
    allocation = ClientAllocation.objects.filter(client=client).first()
    if "remove" in request.POST:
        services.remove_client_cap(client)
        messages.success(request, _("%(client)s has no cap any more.") % {"client": client.name})
        return redirect("plans_overview")
    form = ClientCapForm(request.POST, instance=allocation or ClientAllocation(client=client), prefix=f"cap{client.pk}")
    if form.is_valid():
        services.set_client_cap(
            client, form.cleaned_data["yearly_cap"], form.cleaned_data["mode"], form.cleaned_data["period_start"]
        )
        messages.success(request, _("Cap of %(client)s saved.") % {"client": client.name})
        return redirect("plans_overview")
    messages.error(request, _("The cap of %(client)s was not saved; see below.") % {"client": client.name})
    return _render_overview(request, cap_form=(client.pk, form), status=400)
