"""Views: the deliverability side of a sending account and the sandbox outbox.

- Panels that the account page (:func:`accounts.views.account_detail`) loads with htmx, because
  accounts must not import deliverability: the account's domains, its standing, its suppression list.
- The suppression list of an account: everybody who sees the account may look; adding an address
  needs ``Perm.MANAGE_SENDERS`` (suppressing more is always safe), removing one needs
  ``Perm.MANAGE_SENDING_ACCOUNTS`` (mailing an address again risks the whole account's reputation),
  and only manual entries can be removed at all (:func:`deliverability.suppressions.unsuppress`).
- The sandbox outbox: what the sandbox provider "sent"; nothing in the sandbox leaves the portal.
"""

from __future__ import annotations

from email import message_from_bytes
from email import policy as email_policy
from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.db.models import Count, Q, QuerySet
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts.constants import Perm
from accounts.decorators import membership_required
from accounts.http import AuthedRequest
from accounts.models import Membership, SendingAccount
from accounts.services import ServiceError
from deliverability import suppressions
from deliverability.models import DnsRecord, Domain, SandboxMessage, Suppression
from xes_portal.lib.tenancy import get_for_membership

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

SUPPRESSIONS_PER_PAGE = 50
OUTBOX_PER_PAGE = 25
PANEL_LATEST_SUPPRESSIONS = 5


def _account(request: AuthedRequest, pk: int) -> SendingAccount:
    return get_for_membership(SendingAccount.objects.select_related("client"), request.membership, pk=pk)


def _page(request: AuthedRequest, queryset: QuerySet[Any], per_page: int) -> Page[Any]:
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


# --- panels of the account page -----------------------------------------------------------


@membership_required()
def account_domains_panel(request: AuthedRequest, pk: int) -> HttpResponse:
    """The account's domains with a summary of their DNS records' verdicts."""
    account = _account(request, pk)
    domains = (
        Domain.objects.for_membership(request.membership)
        .filter(sending_account=account)
        .annotate(
            records_total=Count("records"),
            records_good=Count("records", filter=Q(records__status__in=DnsRecord.GOOD)),
            records_broken=Count("records", filter=Q(records__status__in=DnsRecord.BROKEN)),
        )
    )
    return render(request, "deliverability/accounts/domains_panel.html", {"account": account, "domains": domains})


STANDING_MEANING: dict[str, StrOrPromise] = {
    SendingAccount.Standing.GOOD: gettext_lazy(
        "Sending normally: bounces and spam complaints over the last 7 days are within healthy limits."
    ),
    SendingAccount.Standing.WARNING: gettext_lazy(
        "Bounces or spam complaints are higher than they should be. Clean your lists now: remove invalid "
        "addresses and people who did not ask for your mail, before the account is put on probation."
    ),
    SendingAccount.Standing.PROBATION: gettext_lazy(
        "Too many bounces or spam complaints: the XES team is reviewing this account and will work with you. "
        "Sending is slowed down and promotional e-mail is paused; transactional e-mail continues. Probation "
        "ends after 7 days in a row below the warning levels."
    ),
    SendingAccount.Standing.SUSPENDED: gettext_lazy(
        "All sending from this account has stopped until the XES team lifts the suspension. Please contact XES support."
    ),
}


@membership_required()
def account_standing_panel(request: AuthedRequest, pk: int) -> HttpResponse:
    """The account's standing, what it means, and links to its dedicated IP and sandbox outbox."""
    account = _account(request, pk)
    outbox_count = None
    if outbox_visible(request.membership):
        outbox_count = SandboxMessage.objects.for_membership(request.membership).filter(sending_account=account).count()
    return render(
        request,
        "deliverability/accounts/standing_panel.html",
        {"account": account, "meaning": STANDING_MEANING.get(account.standing, ""), "outbox_count": outbox_count},
    )


@membership_required()
def account_suppressions_panel(request: AuthedRequest, pk: int) -> HttpResponse:
    """How many addresses the account suppresses, by reason, and the latest few."""
    account = _account(request, pk)
    listed = Suppression.objects.for_membership(request.membership).filter(sending_account=account)
    counts = dict(listed.order_by().values_list("reason").annotate(n=Count("pk")).values_list("reason", "n"))
    by_reason = [(label, counts.get(value, 0)) for value, label in Suppression.Reason.choices]
    return render(
        request,
        "deliverability/accounts/suppressions_panel.html",
        {
            "account": account,
            "total": sum(counts.values()),
            "by_reason": by_reason,
            "latest": listed[:PANEL_LATEST_SUPPRESSIONS],
        },
    )


# --- the suppression list -----------------------------------------------------------------


class SuppressionFilterForm(forms.Form):
    q = forms.CharField(label=gettext_lazy("Search"), required=False, max_length=254)
    reason = forms.ChoiceField(
        label=gettext_lazy("Reason"),
        required=False,
        choices=[("", gettext_lazy("All reasons")), *Suppression.Reason.choices],
    )


class SuppressionAddForm(forms.Form):
    email = forms.CharField(
        label=gettext_lazy("E-mail address"),
        max_length=320,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "placeholder": "name@example.com"}),
    )
    note = forms.CharField(
        label=gettext_lazy("Note"),
        required=False,
        max_length=300,
        help_text=gettext_lazy("Optional: why, e.g. “asked by phone not to be mailed”."),
    )


@membership_required()
def suppression_list(request: AuthedRequest, pk: int) -> HttpResponse:
    account = _account(request, pk)
    return _render_suppressions(request, account, SuppressionAddForm())


@require_POST
@membership_required(Perm.MANAGE_SENDERS)
def suppression_add(request: AuthedRequest, pk: int) -> HttpResponse:
    account = _account(request, pk)
    form = SuppressionAddForm(request.POST)
    if form.is_valid():
        try:
            entry = suppressions.add_manual(
                account, form.cleaned_data["email"], note=form.cleaned_data["note"], by=request.user
            )
        except ValidationError as exc:
            form.add_error("email", exc)
        else:
            messages.success(
                request, _("%(email)s is suppressed: this account will not send to it.") % {"email": entry.email}
            )
            return redirect("deliverability:suppression_list", pk=account.pk)
    return _render_suppressions(request, account, form, status=400)


@require_POST
@membership_required(Perm.MANAGE_SENDING_ACCOUNTS)
def suppression_remove(request: AuthedRequest, pk: int, suppression_id: int) -> HttpResponse:
    account = _account(request, pk)
    entry = get_for_membership(
        Suppression.objects.filter(sending_account=account), request.membership, pk=suppression_id
    )
    try:
        suppressions.unsuppress(entry, by=request.user)
    except ServiceError as exc:
        messages.error(request, _("%(email)s stays on the list. %(why)s") % {"email": entry.email, "why": exc})
    else:
        messages.success(
            request,
            _("%(email)s was removed from the suppression list; this account may mail it again.")
            % {"email": entry.email},
        )
    return redirect("deliverability:suppression_list", pk=account.pk)


def _render_suppressions(
    request: AuthedRequest, account: SendingAccount, add_form: SuppressionAddForm, status: int = 200
) -> HttpResponse:
    """The list, searched (substring of the address, any case) and filtered by reason, one page."""
    filters = SuppressionFilterForm(request.GET or None)
    listed = Suppression.objects.for_membership(request.membership).filter(sending_account=account)
    if filters.is_valid():
        if query := filters.cleaned_data["q"].strip():
            listed = listed.filter(email__icontains=query)
        if reason := filters.cleaned_data["reason"]:
            listed = listed.filter(reason=reason)
    page = _page(request, listed.select_related("created_by"), SUPPRESSIONS_PER_PAGE)
    for entry in page:  # evaluates the page once; the template iterates the same objects
        entry.why_not_removable = suppressions.why_not_removable(entry)  # type: ignore[attr-defined]
    context = {
        "account": account,
        "filters": filters,
        "add_form": add_form,
        "page": page,
        "removable": suppressions.REMOVABLE,
    }
    # A search typed into the box (htmx) replaces only the results; restoring a page from the
    # browser history needs all of it.
    template = "deliverability/accounts/suppressions.html"
    htmx: Any = getattr(request, "htmx", None)
    if htmx and request.method == "GET" and not htmx.history_restore_request:
        template += "#results"
    return render(request, template, context, status=status)


# --- the sandbox outbox -------------------------------------------------------------------


def outbox_visible(membership: Membership) -> bool:
    """The outbox matters when the portal delivers to the sandbox, or once it holds messages
    (e.g. messages kept from before a switch to SES)."""
    return settings.DELIVERY_PROVIDER == "sandbox" or SandboxMessage.objects.for_membership(membership).exists()


@membership_required()
def outbox(request: AuthedRequest) -> HttpResponse:
    if not outbox_visible(request.membership):
        raise Http404
    accounts = list(SendingAccount.objects.for_membership(request.membership))
    sent = (
        SandboxMessage.objects.for_membership(request.membership)
        .defer("raw")
        .select_related("sending_account")
        .prefetch_related("events")
    )
    account = None
    if account_id := request.GET.get("account"):
        account = next((a for a in accounts if str(a.pk) == account_id), None)
        if account is None:
            raise Http404
        sent = sent.filter(sending_account=account)
    return render(
        request,
        "deliverability/outbox/list.html",
        {
            "page": _page(request, sent, OUTBOX_PER_PAGE),
            "accounts": accounts,
            "account": account,
            "sandbox_active": settings.DELIVERY_PROVIDER == "sandbox",
        },
    )


@membership_required()
def outbox_message(request: AuthedRequest, pk: int) -> HttpResponse:
    message = get_for_membership(
        SandboxMessage.objects.select_related("sending_account").prefetch_related("events"),
        request.membership,
        pk=pk,
    )
    raw = bytes(message.raw)
    return render(
        request,
        "deliverability/outbox/detail.html",
        # The raw message is shown as text, escaped by the template: never rendered as HTML.
        {"message": message, "raw": raw.decode("utf-8", errors="replace"), "text_body": _text_body(raw)},
    )


def _text_body(raw: bytes) -> str:
    """The plain-text part, decoded (quoted-printable, base64, charset), for reading; empty if none."""
    try:
        parsed = message_from_bytes(raw, policy=email_policy.default)
        body = parsed.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
        return body.get_content() if body is not None else ""
    except Exception:  # noqa: BLE001 - a malformed message still shows its raw text
        return ""


urlpatterns: list[URLPattern] = [
    path("accounts/<int:pk>/panels/domains/", account_domains_panel, name="account_domains_panel"),
    path("accounts/<int:pk>/panels/standing/", account_standing_panel, name="account_standing_panel"),
    path("accounts/<int:pk>/panels/suppressions/", account_suppressions_panel, name="account_suppressions_panel"),
    path("accounts/<int:pk>/suppressions/", suppression_list, name="suppression_list"),
    path("accounts/<int:pk>/suppressions/add/", suppression_add, name="suppression_add"),
    path("accounts/<int:pk>/suppressions/<int:suppression_id>/remove/", suppression_remove, name="suppression_remove"),
    path("outbox/", outbox, name="outbox"),
    path("outbox/<int:pk>/", outbox_message, name="outbox_message"),
]
