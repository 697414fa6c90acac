"""Campaigns (bulk sends): create, pre-send checks, send now or at a time, live progress, pause,
resume, cancel, and "send again to those who did not open / click" in one action."""

from __future__ import annotations

import zoneinfo
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts.constants import Perm
from accounts.decorators import membership_required
from accounts.http import AuthedRequest
from accounts.models import SenderAddress, SendingAccount
from accounts.services import ServiceError
from campaigns import checks
from campaigns.models import Campaign, ContactList, Message, Segment, Template
from campaigns.sending import (
    campaign_progress,
    campaigns_progress,
    cancel_campaign,
    pause_campaign,
    resume_campaign,
    start_campaign_async,
)
from xes_portal.lib.tenancy import get_for_membership

EDITABLE = (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED)
RUNNING = (Campaign.Status.QUEUEING, Campaign.Status.SENDING)


class CampaignForm(forms.ModelForm[Campaign]):
    audience = forms.ChoiceField(label=gettext_lazy("Recipients"))
    touchpoint = forms.ChoiceField(
        label=gettext_lazy("Touchpoint"),
        choices=[
            ("promotional", gettext_lazy("Promotional (newsletters, offers): needs an unsubscribe link")),
            ("transactional", gettext_lazy("Transactional (service messages the recipient expects)")),
        ],
        widget=forms.RadioSelect,
    )
    send_at = forms.DateTimeField(
        label=gettext_lazy("Send at (optional)"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )

    class Meta:
        model = Campaign
        fields = ("name", "sending_account", "sender", "template", "tracking")

    def __init__(self, *args: Any, membership: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.membership = membership
        self.zone = zoneinfo.ZoneInfo(membership.organisation.time_zone)
        self.fields["sending_account"].queryset = SendingAccount.objects.for_membership(membership)  # type: ignore[attr-defined]
        self.fields["sender"].queryset = (  # type: ignore[attr-defined]
            SenderAddress.objects.for_membership(membership).filter(verified_at__isnull=False)
        )
        self.fields["sender"].label = _("From (a verified sender address of the account)")
        self.fields["template"].queryset = Template.objects.for_membership(membership)  # type: ignore[attr-defined]
        lists = ContactList.objects.for_membership(membership)
        segments = Segment.objects.for_membership(membership)
        self.fields["audience"].choices = [  # type: ignore[attr-defined]
            (_("Lists"), [(f"list:{item.pk}", item.name) for item in lists]),
            (_("Segments"), [(f"segment:{item.pk}", item.name) for item in segments]),
        ]
        self.fields["send_at"].help_text = _(
            "In your organisation's time zone, %(zone)s. Empty: send when you press Send."
        ) % {"zone": membership.organisation.time_zone}
        self.fields["tracking"].label = _("Open and click tracking")
        self.fields["tracking"].widget.choices = [  # type: ignore[attr-defined]
            ("unknown", _("As the template says")),
            ("true", _("Track opens and clicks")),
            ("false", _("Do not track")),
        ]
        self.fields["tracking"].help_text = _(
            "Tracked links go through the portal (or your branded tracking domain); opens are counted by a pixel."
        )
        instance = self.instance
        self.initial.setdefault("touchpoint", "promotional" if instance.promotional else "transactional")
        if instance.contact_list_id:
            self.initial["audience"] = f"list:{instance.contact_list_id}"
        elif instance.segment_id:
            self.initial["audience"] = f"segment:{instance.segment_id}"
        if instance.scheduled_at:
            self.initial["send_at"] = instance.scheduled_at.astimezone(self.zone).replace(tzinfo=None)

    def clean_send_at(self) -> datetime | None:
        local = self.cleaned_data.get("send_at")
        if local is None:
            return None
        if local <= timezone.now():
            raise forms.ValidationError(_("Choose a time in the future, or leave it empty to send now."))
        return local

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        account, sender = data.get("sending_account"), data.get("sender")
        if account and sender and sender.sending_account_id != account.pk:
            self.add_error("sender", _("This address belongs to another sending account."))
        return data

    def save(self, commit: bool = True) -> Campaign:
        campaign = super().save(commit=False)
        kind, _sep, pk = self.cleaned_data["audience"].partition(":")
        campaign.contact_list = (
            ContactList.objects.for_membership(self.membership).get(pk=pk) if kind == "list" else None
        )
        campaign.segment = Segment.objects.for_membership(self.membership).get(pk=pk) if kind == "segment" else None
        campaign.promotional = self.cleaned_data["touchpoint"] == "promotional"
        campaign.scheduled_at = self.cleaned_data.get("send_at")
        if commit:
            campaign.save()
        return campaign


def _campaigns(request: AuthedRequest):  # type: ignore[no-untyped-def]
    return Campaign.objects.for_membership(request.membership).select_related("sending_account", "template")


def _get(request: AuthedRequest, pk: int) -> Campaign:
    return get_for_membership(_campaigns(request), request.membership, pk=pk)


@membership_required()
def campaign_list(request: AuthedRequest) -> HttpResponse:
    campaigns = list(_campaigns(request)[:200])
    progress = campaigns_progress([c.pk for c in campaigns if c.status not in EDITABLE])
    rows = [{"campaign": c, "progress": progress.get(c.pk)} for c in campaigns]
    return render(request, "campaigns/campaigns/list.html", {"rows": rows})


@membership_required(Perm.MANAGE_CAMPAIGNS)
def campaign_create(request: AuthedRequest) -> HttpResponse:
    campaign = Campaign(organisation=request.membership.organisation, created_by=request.user)
    return _campaign_form(request, campaign)


@membership_required(Perm.MANAGE_CAMPAIGNS)
def campaign_edit(request: AuthedRequest, pk: int) -> HttpResponse:
    campaign = _get(request, pk)
    if campaign.status not in EDITABLE:
        messages.info(request, _("A campaign that has started cannot be changed."))
        return redirect("campaigns:campaign_detail", pk=campaign.pk)
    return _campaign_form(request, campaign)


def _campaign_form(request: AuthedRequest, campaign: Campaign) -> HttpResponse:
    # "Send at" is typed in the organisation's time zone: parse it there.
    with timezone.override(zoneinfo.ZoneInfo(request.membership.organisation.time_zone)):
        form = CampaignForm(request.POST or None, instance=campaign, membership=request.membership)
        if request.method == "POST" and form.is_valid():
            campaign = form.save()
            return redirect("campaigns:campaign_detail", pk=campaign.pk)
    return render(
        request,
        "campaigns/campaigns/form.html",
        {"form": form, "campaign": campaign},
        status=400 if form.errors else 200,
    )


@membership_required()
def campaign_detail(request: AuthedRequest, pk: int) -> HttpResponse:
    campaign = _get(request, pk)
    context: dict[str, Any] = {"campaign": campaign, "zone": zoneinfo.ZoneInfo(campaign.organisation.time_zone)}
    if campaign.status in EDITABLE:
        context["checks"] = checks.run_checks(campaign)
        context["blocked"] = bool(checks.blockers(context["checks"]))
    else:
        context["progress"] = campaign_progress(campaign.pk)
    return render(request, "campaigns/campaigns/detail.html", context)


@membership_required()
def campaign_progress_panel(request: AuthedRequest, pk: int) -> HttpResponse:
    """The live progress panel (htmx polls it while the campaign runs)."""
    campaign = _get(request, pk)
    return render(
        request,
        "campaigns/campaigns/partials/progress.html",
        {"campaign": campaign, "progress": campaign_progress(campaign.pk)},
    )


@require_POST
@membership_required(Perm.MANAGE_CAMPAIGNS)
def campaign_send(request: AuthedRequest, pk: int) -> HttpResponse:
    """Send now, or schedule: the checks run again; a double click starts one run."""
    campaign = _get(request, pk)
    if campaign.status not in EDITABLE:
        return redirect("campaigns:campaign_detail", pk=campaign.pk)
    blockers = checks.blockers(checks.run_checks(campaign))
    if blockers:
        for check in blockers:
            messages.error(request, check.message)
        return redirect("campaigns:campaign_detail", pk=campaign.pk)
    if campaign.scheduled_at and campaign.scheduled_at > timezone.now():
        Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.DRAFT).update(status=Campaign.Status.SCHEDULED)
        messages.success(request, _("Scheduled. It starts at the time you chose; you can still change it until then."))
    elif start_campaign_async(campaign.pk):
        messages.success(request, _("Sending started."))
    return redirect("campaigns:campaign_detail", pk=campaign.pk)


@require_POST
@membership_required(Perm.MANAGE_CAMPAIGNS)
def campaign_unschedule(request: AuthedRequest, pk: int) -> HttpResponse:
    campaign = _get(request, pk)
    Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.SCHEDULED).update(status=Campaign.Status.DRAFT)
    return redirect("campaigns:campaign_detail", pk=campaign.pk)


@require_POST
@membership_required(Perm.MANAGE_CAMPAIGNS)
def campaign_pause(request: AuthedRequest, pk: int) -> HttpResponse:
    campaign = _get(request, pk)
    if pause_campaign(campaign.pk, _("Paused by %(user)s.") % {"user": request.user.email}):
        messages.success(request, _("Paused. Messages already handed over still go out; nothing is sent twice."))
    return redirect("campaigns:campaign_detail", pk=campaign.pk)


@require_POST
@membership_required(Perm.MANAGE_CAMPAIGNS)
def campaign_resume(request: AuthedRequest, pk: int) -> HttpResponse:
    campaign = _get(request, pk)
    try:
        resume_campaign(campaign.pk)
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Sending resumed."))
    return redirect("campaigns:campaign_detail", pk=campaign.pk)


@require_POST
@membership_required(Perm.MANAGE_CAMPAIGNS)
def campaign_cancel(request: AuthedRequest, pk: int) -> HttpResponse:
    campaign = _get(request, pk)
    cancelled = cancel_campaign(campaign.pk)
    messages.success(
        request, _("Cancelled; %(n)s messages were not sent and their credits released.") % {"n": cancelled}
    )
    return redirect("campaigns:campaign_detail", pk=campaign.pk)


@require_POST
@membership_required(Perm.MANAGE_CAMPAIGNS)
def campaign_resend(request: AuthedRequest, pk: int) -> HttpResponse:
    """A new draft to those who received this campaign and did not open (or click) it."""
    original = _get(request, pk)
    choice = request.POST.get("filter", "")
    if choice not in Campaign.Resend.values or original.status != Campaign.Status.DONE:
        raise Http404
    with transaction.atomic():
        copy = Campaign.objects.create(
            organisation=original.organisation,
            sending_account=original.sending_account,
            sender=original.sender,
            template=original.template,
            name=_("%(name)s – again to: %(who)s") % {"name": original.name, "who": Campaign.Resend(choice).label},
            promotional=original.promotional,
            resend_of=original,
            resend_filter=choice,
            created_by=request.user,
        )
    messages.success(request, _("A new draft goes to those who did not respond. Check it, then send."))
    return redirect("campaigns:campaign_detail", pk=copy.pk)


@membership_required()
def campaign_messages(request: AuthedRequest, pk: int) -> HttpResponse:
    campaign = _get(request, pk)
    status = request.GET.get("status", "")
    rows = Message.objects.filter(campaign=campaign).order_by("pk")
    if status in Message.Status.values:
        rows = rows.filter(status=status)
    query = request.GET.get("q", "").strip()
    if query:
        rows = rows.filter(to_email__icontains=query)
    return render(
        request,
        "campaigns/campaigns/messages.html",
        {
            "campaign": campaign,
            "rows": rows[:200],
            "status": status,
            "query": query,
            "statuses": Message.Status.choices,
        },
    )


urlpatterns = [
    path("", campaign_list, name="campaign_list"),
    path("new/", campaign_create, name="campaign_create"),
    path("<int:pk>/", campaign_detail, name="campaign_detail"),
    path("<int:pk>/edit/", campaign_edit, name="campaign_edit"),
    path("<int:pk>/progress/", campaign_progress_panel, name="campaign_progress"),
    path("<int:pk>/send/", campaign_send, name="campaign_send"),
    path("<int:pk>/unschedule/", campaign_unschedule, name="campaign_unschedule"),
    path("<int:pk>/pause/", campaign_pause, name="campaign_pause"),
    path("<int:pk>/resume/", campaign_resume, name="campaign_resume"),
    path("<int:pk>/cancel/", campaign_cancel, name="campaign_cancel"),
    path("<int:pk>/resend/", campaign_resend, name="campaign_resend"),
    path("<int:pk>/messages/", campaign_messages, name="campaign_messages"),
]
