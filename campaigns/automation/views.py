"""Portal pages of trigger rules (``/automation/triggers/``) and webhook endpoints
(``/automation/webhooks/``).

Rules: everyone with a membership sees them; ``MANAGE_CAMPAIGNS`` creates, edits, switches and
deletes them. Webhooks are integration secrets like API keys: everyone sees the endpoints and their
delivery log, ``MANAGE_API_KEYS`` (owners and admins) manages them, and only owners may reveal a
secret again after it was shown at creation. Everything is fetched through ``for_membership``.
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from accounts.constants import Perm
from accounts.decorators import membership_required
from accounts.http import AuthedRequest
from accounts.models import Membership
from campaigns.automation import conf, webhooks
from campaigns.automation.forms import TriggerRuleForm, WebhookEndpointForm, campaign_links, link_choices
from campaigns.automation.models import Firing, TriggerRule, WebhookDelivery, WebhookEndpoint, new_webhook_secret
from campaigns.models import Campaign
from xes_portal.lib.tenancy import get_for_membership

RECENT_FIRINGS = 25
DELIVERIES_PER_PAGE = 25


# --- trigger rules --------------------------------------------------------------------------------


def _rules(request: AuthedRequest):  # type: ignore[no-untyped-def]
    return TriggerRule.objects.for_membership(request.membership).select_related("campaign", "template", "sender")


@membership_required()
def rule_list(request: AuthedRequest) -> HttpResponse:
    rules = _rules(request).annotate(
        fired=Count("firings"),
        queued=Count("firings", filter=Q(firings__status=Firing.Status.QUEUED)),
        suppressed=Count("firings", filter=Q(firings__status=Firing.Status.SUPPRESSED)),
        refused=Count("firings", filter=Q(firings__status=Firing.Status.REFUSED)),
    )
    return render(request, "campaigns/automation/rules/list.html", {"rules": rules})


@membership_required(Perm.MANAGE_CAMPAIGNS)
def rule_create(request: AuthedRequest) -> HttpResponse:
    rule = TriggerRule(organisation=request.membership.organisation, created_by=request.user)
    campaign = request.GET.get("campaign", "")
    if campaign.isdigit():
        rule.campaign = Campaign.objects.for_membership(request.membership).filter(pk=campaign).first()
    return _rule_form(request, rule)


@membership_required()
def rule_edit(request: AuthedRequest, pk: int) -> HttpResponse:
    return _rule_form(request, get_for_membership(_rules(request), request.membership, pk=pk))


def _rule_form(request: AuthedRequest, rule: TriggerRule) -> HttpResponse:
    can_edit = request.membership.can(Perm.MANAGE_CAMPAIGNS)
    form = TriggerRuleForm(request.POST or None, instance=rule, membership=request.membership)
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied
        if form.is_valid():
            changed = bool(form.changed_data)
            rule = form.save(commit=False)
            rule.updated_at = timezone.now()
            if changed:
                rule.scanned_until = None  # a changed "not opened" rule looks at every message again
            rule.save()
            messages.success(request, _("Trigger rule “%(name)s” saved.") % {"name": rule.name})
            return redirect("automation:rule_list")
    firings = (
        Firing.objects.for_membership(request.membership).filter(rule=rule).select_related("message")[:RECENT_FIRINGS]
        if rule.pk
        else []
    )
    return render(
        request,
        "campaigns/automation/rules/form.html",
        {"form": form, "rule": rule, "can_edit": can_edit, "firings": firings},
        status=400 if form.errors else 200,
    )


@require_GET
@membership_required()
def rule_links(request: AuthedRequest) -> HttpResponse:
    """The "which link" choices of a campaign (htmx, when the form's campaign changes)."""
    raw = request.GET.get("campaign", "")
    campaign = (
        Campaign.objects.for_membership(request.membership).select_related("template").filter(pk=raw).first()
        if raw.isdigit()
        else None
    )
    form = TriggerRuleForm(membership=request.membership)
    form.fields["link"].choices = link_choices(campaign_links(campaign))  # type: ignore[attr-defined]
    return render(request, "campaigns/automation/rules/partials/link_field.html", {"form": form})


@require_POST
@membership_required(Perm.MANAGE_CAMPAIGNS)
def rule_toggle(request: AuthedRequest, pk: int) -> HttpResponse:
    rule = get_for_membership(_rules(request), request.membership, pk=pk)
    TriggerRule.objects.filter(pk=rule.pk).update(enabled=not rule.enabled, updated_at=timezone.now())
    if rule.enabled:
        messages.success(
            request, _("“%(name)s” is switched off: it sends nothing until you switch it on.") % {"name": rule.name}
        )
    else:
        messages.success(request, _("“%(name)s” is switched on.") % {"name": rule.name})
    return redirect("automation:rule_list")


@require_POST
@membership_required(Perm.MANAGE_CAMPAIGNS)
def rule_delete(request: AuthedRequest, pk: int) -> HttpResponse:
    rule = get_for_membership(_rules(request), request.membership, pk=pk)
    rule.delete()
    messages.success(request, _("Trigger rule deleted. The e-mails it sent stay in the message log."))
    return redirect("automation:rule_list")


# --- webhooks -------------------------------------------------------------------------------------


def _endpoints(request: AuthedRequest):  # type: ignore[no-untyped-def]
    return WebhookEndpoint.objects.for_membership(request.membership).select_related("client")


def _endpoint(request: AuthedRequest, pk: int) -> WebhookEndpoint:
    return get_for_membership(_endpoints(request), request.membership, pk=pk)


def _is_owner(request: AuthedRequest) -> bool:
    return request.membership.role == Membership.Role.OWNER


@membership_required()
def endpoint_list(request: AuthedRequest) -> HttpResponse:
    endpoints = _endpoints(request).annotate(
        failed=Count("deliveries", filter=Q(deliveries__status=WebhookDelivery.Status.FAILED))
    )
    return render(request, "campaigns/automation/webhooks/list.html", {"endpoints": endpoints})


@membership_required(Perm.MANAGE_API_KEYS)
def endpoint_create(request: AuthedRequest) -> HttpResponse:
    endpoint = WebhookEndpoint(organisation=request.membership.organisation, created_by=request.user)
    form = WebhookEndpointForm(request.POST or None, instance=endpoint, membership=request.membership)
    if request.method == "POST" and form.is_valid():
        endpoint = form.save()
        # The secret is rendered in this response; afterwards only owners can reveal it again.
        return render(
            request,
            "campaigns/automation/webhooks/created.html",
            {"endpoint": endpoint, "secret": endpoint.secret},
            status=201,
        )
    return render(
        request,
        "campaigns/automation/webhooks/form.html",
        {"form": form, "endpoint": endpoint},
        status=400 if form.errors else 200,
    )


@membership_required(Perm.MANAGE_API_KEYS)
def endpoint_edit(request: AuthedRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    form = WebhookEndpointForm(request.POST or None, instance=endpoint, membership=request.membership)
    if request.method == "POST" and form.is_valid():
        endpoint = form.save(commit=False)
        endpoint.updated_at = timezone.now()
        endpoint.save()
        messages.success(request, _("Webhook endpoint saved."))
        return redirect("automation:endpoint_detail", pk=endpoint.pk)
    return render(
        request,
        "campaigns/automation/webhooks/form.html",
        {"form": form, "endpoint": endpoint},
        status=400 if form.errors else 200,
    )


@membership_required()
def endpoint_detail(request: AuthedRequest, pk: int) -> HttpResponse:
    return _detail(request, _endpoint(request, pk))


def _detail(request: AuthedRequest, endpoint: WebhookEndpoint, *, secret: str = "") -> HttpResponse:
    deliveries = endpoint.deliveries.order_by("-created_at", "-pk").defer("payload")
    page = Paginator(deliveries, DELIVERIES_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "campaigns/automation/webhooks/detail.html",
        {
            "endpoint": endpoint,
            "page": page,
            "secret": secret,
            "is_owner": _is_owner(request),
            "can_manage": request.membership.can(Perm.MANAGE_API_KEYS),
            "backoff": webhooks.describe_backoff(),
            "timeout": int(conf.timeout()),
            "tolerance": webhooks.SIGNATURE_TOLERANCE,
        },
    )


@require_POST
@membership_required(Perm.MANAGE_API_KEYS)
def endpoint_reveal_secret(request: AuthedRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    if not _is_owner(request):
        raise PermissionDenied
    response = _detail(request, endpoint, secret=endpoint.secret)
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@membership_required(Perm.MANAGE_API_KEYS)
def endpoint_rotate_secret(request: AuthedRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    endpoint.secret = new_webhook_secret()
    endpoint.updated_at = timezone.now()
    endpoint.save(update_fields=["secret", "updated_at"])
    messages.warning(request, _("New secret made. Requests are signed with it from now on: update your receiver."))
    response = _detail(request, endpoint, secret=endpoint.secret)
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@membership_required(Perm.MANAGE_API_KEYS)
def endpoint_toggle(request: AuthedRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=not endpoint.enabled, updated_at=timezone.now())
    if endpoint.enabled:
        messages.success(request, _("Endpoint switched off: no events are sent to it."))
    else:
        messages.success(request, _("Endpoint switched on."))
    return redirect("automation:endpoint_detail", pk=endpoint.pk)


@require_POST
@membership_required(Perm.MANAGE_API_KEYS)
def endpoint_delete(request: AuthedRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    endpoint.delete()
    messages.success(request, _("Webhook endpoint deleted."))
    return redirect("automation:endpoint_list")


@require_POST
@membership_required(Perm.MANAGE_API_KEYS)
def endpoint_test(request: AuthedRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    if not endpoint.enabled:
        messages.error(request, _("Switch the endpoint on first."))
    else:
        webhooks.send_test_event(endpoint)
        messages.success(request, _("Test event queued: it appears in the delivery log below within seconds."))
    return redirect("automation:endpoint_detail", pk=endpoint.pk)


def _delivery(request: AuthedRequest, pk: int, delivery_pk: int) -> WebhookDelivery:
    endpoint = _endpoint(request, pk)
    return get_for_membership(
        WebhookDelivery.objects.filter(endpoint=endpoint).select_related("endpoint"),
        request.membership,
        pk=delivery_pk,
    )


@membership_required()
def delivery_detail(request: AuthedRequest, pk: int, delivery_pk: int) -> HttpResponse:
    delivery = _delivery(request, pk, delivery_pk)
    try:
        payload = json.dumps(json.loads(delivery.payload), indent=2, ensure_ascii=False)
    except ValueError:
        payload = delivery.payload
    return render(
        request,
        "campaigns/automation/webhooks/delivery.html",
        {
            "endpoint": delivery.endpoint,
            "delivery": delivery,
            "payload": payload,
            "attempts": delivery.attempt_log.all(),
            "can_retry": request.membership.can(Perm.MANAGE_API_KEYS)
            and delivery.status in (WebhookDelivery.Status.FAILED, WebhookDelivery.Status.RETRYING),
        },
    )


@require_POST
@membership_required(Perm.MANAGE_API_KEYS)
def delivery_retry(request: AuthedRequest, pk: int, delivery_pk: int) -> HttpResponse:
    delivery = _delivery(request, pk, delivery_pk)
    if webhooks.retry_now(delivery):
        messages.success(request, _("Delivery queued again."))
    else:
        messages.info(request, _("This delivery is not waiting for a retry."))
    return redirect(reverse("automation:delivery_detail", args=[pk, delivery.pk]))


# Included under /automation/ by xes_portal/urls.py (see campaigns/automation/urls.py).
urlpatterns = [
    path("triggers/", rule_list, name="rule_list"),
    path("triggers/new/", rule_create, name="rule_create"),
    path("triggers/links/", rule_links, name="rule_links"),
    path("triggers/<int:pk>/", rule_edit, name="rule_edit"),
    path("triggers/<int:pk>/toggle/", rule_toggle, name="rule_toggle"),
    path("triggers/<int:pk>/delete/", rule_delete, name="rule_delete"),
    path("webhooks/", endpoint_list, name="endpoint_list"),
    path("webhooks/new/", endpoint_create, name="endpoint_create"),
    path("webhooks/<int:pk>/", endpoint_detail, name="endpoint_detail"),
    path("webhooks/<int:pk>/edit/", endpoint_edit, name="endpoint_edit"),
    path("webhooks/<int:pk>/toggle/", endpoint_toggle, name="endpoint_toggle"),
    path("webhooks/<int:pk>/delete/", endpoint_delete, name="endpoint_delete"),
    path("webhooks/<int:pk>/test/", endpoint_test, name="endpoint_test"),
    path("webhooks/<int:pk>/secret/", endpoint_reveal_secret, name="endpoint_reveal_secret"),
    path("webhooks/<int:pk>/secret/rotate/", endpoint_rotate_secret, name="endpoint_rotate_secret"),
    path("webhooks/<int:pk>/deliveries/<int:delivery_pk>/", delivery_detail, name="delivery_detail"),
    path("webhooks/<int:pk>/deliveries/<int:delivery_pk>/retry/", delivery_retry, name="delivery_retry"),
]
