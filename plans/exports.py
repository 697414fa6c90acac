"""Usage statements in the portal and their CSV/XLSX export.

Service providers re-bill their clients from these. Every statement is read through
``CreditEntry.objects.for_membership``: an organisation's roles see all its clients, a
client-user only its own client; a term of another organisation answers 404.

Query parameters (page and export alike):

- ``period=YYYY-MM`` (a calendar month, UTC) or ``term=<id>`` (a plan term); not both.
- ``by=client`` (default: one line per client) or ``by=organisation`` (one "All clients" line).
- ``accounts=1``: break each client down by sending account.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC

from django.db.models import Min, QuerySet
from django.http import Http404, HttpResponse, HttpResponseBadRequest, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe

from accounts.constants import Perm
from accounts.decorators import membership_required
from accounts.http import AuthedRequest
from accounts.models import Membership
from plans import resources
from plans import statements as usage
from plans.models import CreditEntry, Subscription

BY_CLIENT = "client"
BY_ORGANISATION = "organisation"


class BadSelection(ValueError):
    """The query asks for no statement, or for one that cannot exist; the message says why."""


@dataclass(frozen=True)
class Selection:
    """Which statement to show: one month or one term, how it is grouped."""

    period: str | None
    term: Subscription | None
    by_client: bool
    by_account: bool

    @property
    def slug(self) -> str:
        if self.term is not None:
            return f"term-{self.term.starts_at.astimezone(UTC):%Y-%m-%d}-{self.term.pk}"
        return str(self.period)

    def query(self) -> str:
        """The query string that selects this statement again (for export links)."""
        params = QueryDict(mutable=True)
        if self.term is not None:
            params["term"] = str(self.term.pk)
        else:
            params["period"] = str(self.period)
        params["by"] = BY_CLIENT if self.by_client else BY_ORGANISATION
        if self.by_account:
            params["accounts"] = "1"
        return params.urlencode()


def _terms(membership: Membership) -> QuerySet[Subscription]:
    """The organisation's plan terms. Client-users may pick one to see their own usage in it."""
    return Subscription.objects.for_organisation(membership.organisation).select_related("plan")


def parse_selection(request: AuthedRequest, *, default_month: bool) -> Selection:
    """Read the statement the query asks for; BadSelection (400) or Http404 (foreign term)."""
    membership = request.membership
    period = request.GET.get("period", "").strip()
    term_id = request.GET.get("term", "").strip()
    by = request.GET.get("by", BY_CLIENT).strip() or BY_CLIENT
    if by not in (BY_CLIENT, BY_ORGANISATION):
        raise BadSelection(_("Group the statement by “client” or “organisation”."))
    # A client-user's statement is its client's, never a total that would look like the organisation's.
    by_client = by == BY_CLIENT or membership.is_client_user
    by_account = request.GET.get("accounts", "") in ("1", "true", "on")
    if period and term_id:
        raise BadSelection(_("Choose either a month or a plan term, not both."))
    if term_id:
        if not (term_id.isascii() and term_id.isdigit() and len(term_id) <= 18):
            raise BadSelection(_("The plan term must be given by its number."))
        term = _terms(membership).filter(pk=int(term_id)).first()
        if term is None:
            raise Http404
        return Selection(period=None, term=term, by_client=by_client, by_account=by_account)
    if not period:
        if not default_month:
            raise BadSelection(_("Choose a month (period=YYYY-MM) or a plan term (term=<number>)."))
        period = usage.month_label(timezone.now())
    try:
        usage.parse_month(period)
    except ValueError as exc:
        raise BadSelection(
            _("“%(period)s” is not a month. Write it as YYYY-MM, for example 2026-03.") % {"period": period[:20]}
        ) from exc
    return Selection(period=period, term=None, by_client=by_client, by_account=by_account)


def build_statement(membership: Membership, selection: Selection) -> usage.Statement:
    """The statement of ``selection``, from the ledger entries ``membership`` may see."""
    entries = CreditEntry.objects.for_membership(membership)
    options = {"by_client": selection.by_client, "by_account": selection.by_account}
    if selection.term is not None:
        return usage.term_statement(entries, selection.term, **options)
    assert selection.period is not None
    return usage.month_statement(entries, selection.period, **options)


def _month_choices(membership: Membership, current: str | None) -> list[str]:
    """Months from the first usage the member may see until now, newest first (at most five years)."""
    now = timezone.now()
    first = (
        CreditEntry.objects.for_membership(membership)
        .filter(kind=CreditEntry.Kind.CONSUME)
        .aggregate(first=Min("created_at"))["first"]
    )
    months = usage.months_between(min(first or now, now), now)[:60]
    if current and current not in months:
        months.append(current)
    return months


@require_safe
@membership_required()
def statements(request: AuthedRequest) -> HttpResponse:
    """GET /plans/statements/: the statement of a month or plan term, with export links."""
    membership = request.membership
    error = ""
    selection: Selection | None = None
    statement: usage.Statement | None = None
    try:
        selection = parse_selection(request, default_month=True)
    except BadSelection as exc:
        error = str(exc)
    else:
        statement = build_statement(membership, selection)
    export_url = reverse("plans_statement_export", args=["csv"])
    context = {
        "error": error,
        "selection": selection,
        "statement": statement,
        "months": _month_choices(membership, selection.period if selection else None),
        "terms": [(term.pk, usage.term_label(term)) for term in _terms(membership).order_by("-starts_at")],
        "query": selection.query() if selection else "",
        "by_client_query": replace(selection, by_client=True).query() if selection else "",
        "by_organisation_query": replace(selection, by_client=False).query() if selection else "",
        "accounts_query": replace(selection, by_account=not selection.by_account).query() if selection else "",
        "csv_url": export_url,
        "xlsx_url": reverse("plans_statement_export", args=["xlsx"]),
        "is_client_user": membership.is_client_user,
        # Prices are the provider's wholesale cost: owners and admins only.
        "show_money": membership.can(Perm.VIEW_BILLING),
    }
    return render(request, "plans/statements.html", context, status=400 if error else 200)


@require_safe
@membership_required()
def statement_export(request: AuthedRequest, fmt: str) -> HttpResponse:
    """GET /plans/statements/export.csv|xlsx?period=YYYY-MM or ?term=<id>: the statement as a file."""
    if fmt not in resources.FORMATS:
        raise Http404
    membership = request.membership
    try:
        selection = parse_selection(request, default_month=False)
    except BadSelection as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    statement = build_statement(membership, selection)
    dataset = resources.StatementRowResource().export_rows(
        statement.rows, fmt, by_account=selection.by_account, with_money=membership.can(Perm.VIEW_BILLING)
    )
    name_parts = ["xes-statement", slugify(membership.organisation.name) or "organisation"]
    if membership.is_client_user and membership.client is not None:
        name_parts.append(slugify(membership.client.name) or "client")
    name_parts.append(selection.slug)
    response = HttpResponse(resources.render(dataset, fmt), content_type=resources.content_type(fmt))
    response["Content-Disposition"] = content_disposition_header(True, f"{'-'.join(name_parts)}.{fmt}")
    return response
