"""Domains and the DNS wizard: list, add, one page per step, live checks, removal.

Steps: ``verify`` (ownership + DKIM, every plan), then with the Advanced Sender Package for the
domain ``mail-from``, ``spf``, ``dmarc`` and ``tracking``. Without the package those pages explain
what it adds and let an owner order it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.db.models import Prefetch
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST
from django_stubs_ext import StrOrPromise

from accounts.constants import Perm
from accounts.decorators import membership_required
from accounts.http import AuthedRequest
from accounts.models import SendingAccount
from accounts.services import ServiceError
from deliverability import records as generators
from deliverability import services
from deliverability.models import DnsRecord, Domain
from plans import services as plan_services
from plans.models import AddOnProduct, Order
from xes_portal.lib.tenancy import get_for_membership

Kind = DnsRecord.Kind


@dataclass(frozen=True)
class Step:
    slug: str
    title: StrOrPromise
    kinds: tuple[str, ...]
    advanced: bool


STEPS = [
    Step("verify", gettext_lazy("Verify and DKIM"), (Kind.OWNERSHIP, Kind.DKIM), advanced=False),
    Step("mail-from", gettext_lazy("MAIL FROM"), (Kind.MAIL_FROM_MX, Kind.MAIL_FROM_SPF), advanced=True),
    Step("spf", gettext_lazy("SPF"), (Kind.SPF,), advanced=True),
    Step("dmarc", gettext_lazy("DMARC"), (Kind.DMARC,), advanced=True),
    Step("tracking", gettext_lazy("Branded links"), (Kind.TRACKING,), advanced=True),
]
STEP_BY_SLUG = {step.slug: step for step in STEPS}
# The columns of the domain list: one badge per group of records.
LIST_GROUPS = [
    (gettext_lazy("DKIM"), (Kind.OWNERSHIP, Kind.DKIM)),
    (gettext_lazy("MAIL FROM"), (Kind.MAIL_FROM_MX, Kind.MAIL_FROM_SPF)),
    (gettext_lazy("SPF"), (Kind.SPF,)),
    (gettext_lazy("DMARC"), (Kind.DMARC,)),
    (gettext_lazy("Links"), (Kind.TRACKING,)),
]
# Worst first: a group shows the status of its worst record.
SEVERITY = ["conflict", "wrong", "missing", "unknown", "pending", "warning", "ok"]


def group_status(records: list[DnsRecord]) -> str | None:
    """The status badge for a group of records (None when the group has no records)."""
    if not records:
        return None
    return min((r.status for r in records), key=SEVERITY.index)


def _domains(request: AuthedRequest):  # type: ignore[no-untyped-def]
    return Domain.objects.for_membership(request.membership).select_related("sending_account__client")


def _get_domain(request: AuthedRequest, pk: int) -> Domain:
    return get_for_membership(_domains(request), request.membership, pk=pk)


@membership_required()
def domain_list(request: AuthedRequest) -> HttpResponse:
    domains = _domains(request).prefetch_related(Prefetch("records", queryset=DnsRecord.objects.order_by("position")))
    account_id = request.GET.get("account", "")
    if account_id.isdigit():
        domains = domains.filter(sending_account_id=int(account_id))
    rows = []
    for domain in domains:
        records = list(domain.records.all())
        groups = [(label, group_status([r for r in records if r.kind in kinds])) for label, kinds in LIST_GROUPS]
        rows.append({"domain": domain, "groups": groups})
    has_accounts = SendingAccount.objects.for_membership(request.membership).exists()
    return render(
        request,
        "deliverability/domains/list.html",
        {"rows": rows, "groups": [label for label, _kinds in LIST_GROUPS], "has_accounts": has_accounts},
    )


class DomainForm(forms.Form):
    sending_account = forms.ModelChoiceField(
        queryset=SendingAccount.objects.none(), label=gettext_lazy("Sending account")
    )
    name = forms.CharField(
        label=gettext_lazy("Domain"),
        max_length=253,
        help_text=gettext_lazy("The domain of your From addresses, for example example.com or bücher.de."),
    )
    dkim_mode = forms.ChoiceField(
        label=gettext_lazy("DKIM signing"),
        choices=Domain.DkimMode.choices,
        initial=Domain.DkimMode.EASY,
        widget=forms.RadioSelect,
        help_text=gettext_lazy(
            "Easy DKIM needs three CNAME records and rotates keys for you. With your own key we generate a "
            "2048-bit key pair and you publish one TXT record."
        ),
    )

    def __init__(self, *args, membership, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        accounts = SendingAccount.objects.for_membership(membership)
        self.fields["sending_account"].queryset = accounts  # type: ignore[attr-defined]
        if accounts.count() == 1:
            self.fields["sending_account"].initial = accounts.first()


@membership_required(Perm.MANAGE_DOMAINS)
def domain_create(request: AuthedRequest) -> HttpResponse:
    initial = {"sending_account": request.GET["account"]} if request.GET.get("account", "").isdigit() else {}
    form = DomainForm(request.POST or None, membership=request.membership, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            domain = services.add_domain(
                form.cleaned_data["sending_account"],
                form.cleaned_data["name"],
                form.cleaned_data["dkim_mode"],
                request.user,
            )
        except ServiceError as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(
                request,
                _("%(domain)s added. Publish the records below, then check them.") % {"domain": domain.display_name},
            )
            return redirect("deliverability:domain_step", pk=domain.pk, step="verify")
    has_accounts = SendingAccount.objects.for_membership(request.membership).exists()
    return render(
        request,
        "deliverability/domains/form.html",
        {"form": form, "has_accounts": has_accounts},
        status=400 if form.errors else 200,
    )


@membership_required()
def domain_detail(request: AuthedRequest, pk: int) -> HttpResponse:
    return redirect("deliverability:domain_step", pk=_get_domain(request, pk).pk, step="verify")


class MailFromForm(forms.Form):
    subdomain = forms.CharField(
        label=gettext_lazy("MAIL FROM subdomain"),
        max_length=63,
        required=False,
        help_text=gettext_lazy("Bounces go to this subdomain, for example “mail”. Leave empty to stop using one."),
    )


class DmarcForm(forms.Form):
    policy = forms.ChoiceField(label=gettext_lazy("Stage"), choices=Domain.DmarcPolicy.choices)
    report_address = forms.CharField(
        label=gettext_lazy("Address for aggregate reports"),
        max_length=254,
        required=False,
        help_text=gettext_lazy("Receivers send daily reports here (rua). Recommended: a mailbox you read."),
    )


class TrackingForm(forms.Form):
    subdomain = forms.CharField(
        label=gettext_lazy("Tracking subdomain"),
        max_length=63,
        required=False,
        help_text=gettext_lazy("Links in your e-mails then use this host, for example “links”."),
    )


@membership_required()
def domain_step(request: AuthedRequest, pk: int, step: str) -> HttpResponse:
    domain = _get_domain(request, pk)
    current = STEP_BY_SLUG.get(step)
    if current is None:
        raise Http404
    services.sync_records(domain)
    context = _step_context(request, domain, current, _step_form(domain, current))
    return render(request, "deliverability/domains/step.html", context)


def _step_context(request: AuthedRequest, domain: Domain, current: Step, form: forms.Form | None) -> dict[str, object]:
    """Everything a wizard step's page shows (also when a settings form comes back with errors)."""
    advanced = services.has_advanced_sender(domain)
    records = [r for r in domain.records.all() if r.kind in current.kinds]
    index = STEPS.index(current)
    context: dict[str, object] = {
        "domain": domain,
        "step": current,
        "steps": _stepper(domain, advanced),
        "advanced": advanced,
        "records": records,
        "previous": STEPS[index - 1] if index else None,
        "next": STEPS[index + 1] if index + 1 < len(STEPS) else None,
        "form": form,
    }
    if current.advanced and not advanced:
        context.update(_package_offer(request, domain))
    if current.slug == "spf":
        context["spf_merge"] = _spf_merge_advice(domain, records)
    if current.slug == "dmarc":
        next_stage, from_when = services.dmarc_next_stage(domain)
        context.update(
            dmarc_stages=[(value, Domain.DmarcPolicy(value).label) for value in services.DMARC_STAGES],
            dmarc_next=Domain.DmarcPolicy(next_stage).label if next_stage else None,
            dmarc_next_value=next_stage,
            dmarc_next_at=from_when,
            dmarc_next_due=bool(from_when and from_when <= timezone.now()),
        )
    return context


def _step_form(domain: Domain, step: Step) -> forms.Form | None:
    if step.slug == "mail-from":
        return MailFromForm(initial={"subdomain": domain.mail_from_subdomain or "mail"})
    if step.slug == "dmarc":
        return DmarcForm(initial={"policy": domain.dmarc_policy, "report_address": domain.dmarc_rua})
    if step.slug == "tracking":
        return TrackingForm(initial={"subdomain": domain.tracking_subdomain or "links"})
    return None


def _stepper(domain: Domain, advanced: bool) -> list[dict[str, object]]:
    """Each step with the status of its records, for the wizard's progress line."""
    records = list(domain.records.all())
    items = []
    for step in STEPS:
        mine = [r for r in records if r.kind in step.kinds]
        if step.advanced and not advanced:
            state = "locked"
        elif not mine:
            state = "optional"
        else:
            state = group_status(mine) or "pending"
        items.append({"step": step, "state": state})
    return items


def _package_offer(request: AuthedRequest, domain: Domain) -> dict[str, object]:
    product = AddOnProduct.objects.filter(kind=AddOnProduct.Kind.ADVANCED_SENDER).first()
    pending = Order.objects.filter(
        organisation=domain.sending_account.organisation,
        addon__kind=AddOnProduct.Kind.ADVANCED_SENDER,
        domain=domain.name,
        status=Order.Status.PENDING,
    ).exists()
    return {"asp_product": product, "asp_pending": pending}


def _spf_merge_advice(domain: Domain, records: list[DnsRecord]) -> str | None:
    """When the root domain already publishes SPF, the one record to publish instead of it."""
    include = services.domain_provider(domain).spf_include
    for record in records:
        spf = [value for value in record.found if value.lower().startswith("v=spf1")]
        if len(spf) == 1 and record.status not in DnsRecord.GOOD:
            return generators.merged_spf(spf[0], include)
    return None


@require_POST
@membership_required()
def domain_check(request: AuthedRequest, pk: int) -> HttpResponse:
    """Check the records of one step (or all) now; checking changes nothing the user set up."""
    domain = _get_domain(request, pk)
    step = STEP_BY_SLUG.get(request.POST.get("step", ""))
    outcome = services.check_domain(domain, kinds=step.kinds if step else None)
    if outcome.verified_now:
        messages.success(
            request, _("%(domain)s is verified. You can send from its addresses.") % {"domain": domain.display_name}
        )
    target = reverse("deliverability:domain_step", kwargs={"pk": domain.pk, "step": step.slug if step else "verify"})
    if request.htmx:  # type: ignore[attr-defined]
        records = [r for r in domain.records.all() if step is None or r.kind in step.kinds]
        context = {
            "domain": domain,
            "records": records,
            "step": step or STEPS[0],
            "steps": _stepper(domain, services.has_advanced_sender(domain)),
            "oob": True,
        }
        return render(request, "deliverability/domains/partials/check_result.html", context)
    return redirect(target)


@require_POST
@membership_required(Perm.MANAGE_DOMAINS)
def domain_settings(request: AuthedRequest, pk: int, step: str) -> HttpResponse:
    """Save the settings of an Advanced Sender Package step (MAIL FROM, DMARC, tracking)."""
    domain = _get_domain(request, pk)
    current = STEP_BY_SLUG.get(step)
    if current is None or step == "verify" or step == "spf":
        raise Http404
    form: forms.Form
    try:
        if step == "mail-from":
            form = MailFromForm(request.POST)
            if form.is_valid():
                services.set_mail_from(domain, form.cleaned_data["subdomain"])
        elif step == "dmarc":
            form = DmarcForm(request.POST)
            if form.is_valid():
                services.set_dmarc(domain, form.cleaned_data["policy"], form.cleaned_data["report_address"])
        else:
            form = TrackingForm(request.POST)
            if form.is_valid():
                services.set_tracking(domain, form.cleaned_data["subdomain"])
    except ServiceError as exc:
        form.add_error(None, str(exc))
    if form.is_valid() and not form.errors:
        messages.success(request, _("Saved. Publish the record below, then check it."))
        return redirect("deliverability:domain_step", pk=domain.pk, step=step)
    context = _step_context(request, domain, current, form)
    return render(request, "deliverability/domains/step.html", context, status=400)


@require_POST
@membership_required(Perm.MANAGE_PLANS)
def domain_order_package(request: AuthedRequest, pk: int) -> HttpResponse:
    """Order the Advanced Sender Package for this domain (the XES team approves it)."""
    domain = _get_domain(request, pk)
    product = AddOnProduct.objects.filter(kind=AddOnProduct.Kind.ADVANCED_SENDER).first()
    if product is None:
        raise Http404
    try:
        plan_services.order_addon(domain.sending_account.organisation, product, domain.name, request.user)
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            _("Ordered the Advanced Sender Package for %(domain)s. We e-mail you when the XES team has approved it.")
            % {"domain": domain.display_name},
        )
    return redirect("deliverability:domain_step", pk=domain.pk, step=request.POST.get("step") or "mail-from")


@require_POST
@membership_required(Perm.MANAGE_DOMAINS)
def domain_delete(request: AuthedRequest, pk: int) -> HttpResponse:
    domain = _get_domain(request, pk)
    try:
        services.remove_domain(domain)
    except ServiceError as exc:
        messages.error(request, str(exc))
        return redirect("deliverability:domain_step", pk=domain.pk, step="verify")
    messages.success(request, _("%(domain)s removed.") % {"domain": domain.display_name})
    return redirect("deliverability:domain_list")


urlpatterns = [
    path("domains/", domain_list, name="domain_list"),
    path("domains/new/", domain_create, name="domain_create"),
    path("domains/<int:pk>/", domain_detail, name="domain_detail"),
    path("domains/<int:pk>/check/", domain_check, name="domain_check"),
    path("domains/<int:pk>/order-package/", domain_order_package, name="domain_order_package"),
    path("domains/<int:pk>/delete/", domain_delete, name="domain_delete"),
    path("domains/<int:pk>/<slug:step>/", domain_step, name="domain_step"),
    path("domains/<int:pk>/<slug:step>/save/", domain_settings, name="domain_settings"),
]
