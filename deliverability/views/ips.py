"""Views: the dedicated IP page of a sending account: its IPs, the warm-up, the advisor and the order form.

Everybody who may see the account sees the page; only owners (``Perm.MANAGE_PLANS``) order, and
only roles that see billing (``Perm.VIEW_BILLING``) see the organisation's orders. The XES team
assigns the IPs in the admin (:mod:`deliverability.admin.ips`).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path
from django.utils import formats
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts.constants import Perm
from accounts.decorators import membership_required
from accounts.http import AuthedRequest
from accounts.models import SendingAccount
from accounts.services import ServiceError
from deliverability import warmup
from deliverability.models import DedicatedIp, Domain
from plans import services as plans_services
from plans.models import AddOnProduct, Order
from xes_portal.lib.domains import domain_display, normalise_domain
from xes_portal.lib.tenancy import get_for_membership

ORDERS_SHOWN = 10
FORM_PREFIX = "ip"


class DedicatedIpOrderForm(forms.Form):
    """A dedicated IP for one domain: one of the account's domains, or another one typed in."""

    domain = forms.ChoiceField(label=gettext_lazy("Domain"), required=False)
    other_domain = forms.CharField(
        label=gettext_lazy("Or another domain"),
        max_length=253,
        required=False,
        help_text=gettext_lazy(
            "The domain you send from, e.g. example.com. International names like müller.de work too."
        ),
        widget=forms.TextInput(attrs={"placeholder": "example.com", "autocomplete": "off", "spellcheck": "false"}),
    )
    note = forms.CharField(
        label=gettext_lazy("Note for the XES team"),
        max_length=1000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args: Any, domains: list[Domain], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if domains:
            field = self.fields["domain"]
            assert isinstance(field, forms.ChoiceField)
            field.choices = [("", _("Choose a domain of this account")), *((d.name, d.display_name) for d in domains)]
        else:
            # Nothing to choose from: the text field is the only (and required) way to name the domain.
            del self.fields["domain"]
            self.fields["other_domain"].label = _("Domain")
            self.fields["other_domain"].required = True

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        chosen, typed = data.get("domain") or "", (data.get("other_domain") or "").strip()
        if chosen and typed:
            raise ValidationError(_("Choose one of the account's domains or enter another one, not both."))
        if not chosen and not typed:
            if "other_domain" not in self.errors:
                raise ValidationError(_("Choose the domain the dedicated IP is for, or enter it."))
            return data
        if typed:
            try:
                name = normalise_domain(typed)
            except ValidationError as exc:
                self.add_error("other_domain", exc)
                return data
            if "." not in name:
                self.add_error("other_domain", _("Enter a full domain name, like example.com."))
                return data
            data["domain_name"] = name
        else:
            data["domain_name"] = chosen
        return data


def _account(request: AuthedRequest, pk: int) -> SendingAccount:
    """The account if the membership may see it (client-users: only their client's), else 404."""
    return get_for_membership(SendingAccount.objects.select_related("client"), request.membership, pk=pk)  # type: ignore[no-any-return]


def _chart(progress: warmup.WarmupProgress) -> dict[str, Any]:
    """Chart data for ``static/js/warmup.js``: one bar per day, today's picked out."""
    return {
        "labels": [formats.date_format(row.date, "MONTH_DAY_FORMAT") for row in progress.rows],
        "days": [_("Day %(n)s") % {"n": row.day} for row in progress.rows],
        "caps": [row.cap for row in progress.rows],
        "states": [row.state for row in progress.rows],
        "label": _("Daily cap"),
        "today": _("today"),
    }


def _render(
    request: AuthedRequest, account: SendingAccount, form: DedicatedIpOrderForm | None = None, status: int = 200
) -> HttpResponse:
    m = request.membership
    domains = list(Domain.objects.filter(sending_account=account))
    progress = warmup.progress(account)
    context: dict[str, Any] = {
        "account": account,
        "ips": list(DedicatedIp.objects.filter(pool__sending_account=account)),
        "progress": progress,
        "chart": _chart(progress) if progress is not None else None,
        "advice": warmup.advice(account),
        "warmup_days": warmup.WARMUP_DAYS,
    }
    if m.can(Perm.VIEW_BILLING):
        orders = list(
            Order.objects.for_membership(m)
            .filter(addon__kind=AddOnProduct.Kind.DEDICATED_IP)
            .select_related("addon")[:ORDERS_SHOWN]
        )
        for order in orders:
            order.domain_shown = domain_display(order.domain)  # type: ignore[attr-defined]
        context["orders"] = orders
        context["waiting"] = any(o.status in (Order.Status.PENDING, Order.Status.APPROVED) for o in orders)
    if m.can(Perm.MANAGE_PLANS):
        product = AddOnProduct.objects.filter(kind=AddOnProduct.Kind.DEDICATED_IP, orderable=True).first()
        context["product"] = product
        if product is not None:
            context["form"] = form or DedicatedIpOrderForm(domains=domains, prefix=FORM_PREFIX)
    return render(request, "deliverability/ips/dedicated_ip.html", context, status=status)


@membership_required()
def dedicated_ip(request: AuthedRequest, pk: int) -> HttpResponse:
    return _render(request, _account(request, pk))


@require_POST
@membership_required(Perm.MANAGE_PLANS)
def order_dedicated_ip(request: AuthedRequest, pk: int) -> HttpResponse:
    account = _account(request, pk)
    product = AddOnProduct.objects.filter(kind=AddOnProduct.Kind.DEDICATED_IP, orderable=True).first()
    if product is None:
        messages.error(request, _("Dedicated IPs cannot be ordered in the portal at the moment. Contact the XES team."))
        return redirect("deliverability:dedicated_ip", pk=account.pk)
    form = DedicatedIpOrderForm(
        request.POST, domains=list(Domain.objects.filter(sending_account=account)), prefix=FORM_PREFIX
    )
    if form.is_valid():
        # The team assigns the IP to an account's pool, and an add-on is per domain: say which account.
        note = f"For sending account “{account.name}” (#{account.pk})."
        if form.cleaned_data["note"].strip():
            note = f"{note}\n{form.cleaned_data['note'].strip()}"
        try:
            order = plans_services.order_addon(
                request.membership.organisation, product, form.cleaned_data["domain_name"], request.user, note
            )
        except (ServiceError, ValidationError) as exc:
            for message in getattr(exc, "messages", [str(exc)]):
                form.add_error(None, message)
        else:
            messages.success(
                request,
                _(
                    "Thank you: your order of a dedicated IP for %(domain)s waits for the XES team's approval. The XES "
                    "team then assigns the IP to %(account)s and starts its warm-up; this page shows its progress."
                )
                % {"domain": domain_display(order.domain), "account": account.name},
            )
            return redirect("deliverability:dedicated_ip", pk=account.pk)
    return _render(request, account, form=form, status=400)


urlpatterns: list[URLPattern] = [
    path("accounts/<int:pk>/dedicated-ip/", dedicated_ip, name="dedicated_ip"),
    path("accounts/<int:pk>/dedicated-ip/order/", order_dedicated_ip, name="dedicated_ip_order"),
]
