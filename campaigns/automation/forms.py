"""Forms of the trigger rule and webhook endpoint pages, with their save-time checks."""

from __future__ import annotations

import html
import re
from typing import Any

from django import forms
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import Client, SenderAddress
from campaigns.automation import netguard
from campaigns.automation.models import (
    DEFAULT_WEBHOOK_EVENT_TYPES,
    WEBHOOK_EVENT_TYPES,
    TriggerRule,
    WebhookEndpoint,
)
from campaigns.checks import UNSUBSCRIBE_MARKER
from campaigns.models import Campaign, MessageEvent, Template, tracking_enabled
from campaigns.tracking.links import is_safe_url

ANY_LINK = ""
OTHER_LINK = "other"
MAX_DELAY_DAYS = 365
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)


def campaign_links(campaign: Campaign | None) -> list[str]:
    """The links of the campaign's template that a click can be matched on: absolute http(s) URLs
    without personalisation (a link with ``{{ ... }}`` differs per recipient)."""
    if campaign is None:
        return []
    links: list[str] = []
    for match in _HREF.finditer(campaign.template.body):
        url = html.unescape(match.group(1) if match.group(1) is not None else match.group(2)).strip()
        if "{{" in url or "{%" in url or not url.lower().startswith(("http://", "https://")):
            continue
        if is_safe_url(url) and url not in links:
            links.append(url)
    return links


class TriggerRuleForm(forms.ModelForm[TriggerRule]):
    link = forms.ChoiceField(label=gettext_lazy("Which link"), required=False)
    link_other = forms.CharField(
        label=gettext_lazy("Link address"),
        required=False,
        max_length=2000,
        help_text=gettext_lazy("The full address as it is in the e-mail, e.g. https://example.com/offer."),
        widget=forms.URLInput(attrs={"placeholder": "https://"}),
    )
    delay_days = forms.IntegerField(
        label=gettext_lazy("Days without opening"),
        required=False,
        min_value=1,
        max_value=MAX_DELAY_DAYS,
        help_text=gettext_lazy("Counted from when the campaign's e-mail was sent to the recipient."),
    )
    touchpoint = forms.ChoiceField(
        label=gettext_lazy("Touchpoint"),
        choices=[
            ("promotional", gettext_lazy("Promotional (offers, reminders): needs an unsubscribe link")),
            ("transactional", gettext_lazy("Transactional (a service message the recipient expects)")),
        ],
        widget=forms.RadioSelect,
    )

    class Meta:
        model = TriggerRule
        fields = ("name", "campaign", "event", "template", "sender")
        widgets = {"event": forms.RadioSelect}
        help_texts = {
            "name": gettext_lazy("For you, e.g. “Offer clicked: send the brochure”."),
        }
        labels = {"template": gettext_lazy("Send the template"), "sender": gettext_lazy("From")}

    def __init__(self, *args: Any, membership: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.membership = membership
        campaigns = Campaign.objects.for_membership(membership).select_related("template", "sending_account")
        self.fields["campaign"].queryset = campaigns  # type: ignore[attr-defined]
        self.fields["campaign"].label = _("In the campaign")
        # Choosing a campaign reloads the "which link" choices (htmx; the page works without).
        self.fields["campaign"].widget.attrs.update(
            {"hx-get": reverse("automation:rule_links"), "hx-target": "#rule-link-choice", "hx-trigger": "change"}
        )
        self.fields["template"].queryset = Template.objects.for_membership(membership)  # type: ignore[attr-defined]
        self.fields["sender"].queryset = (  # type: ignore[attr-defined]
            SenderAddress.objects.for_membership(membership)
            .filter(verified_at__isnull=False)
            .select_related("sending_account")
        )
        self.fields["sender"].help_text = _("A verified address of the campaign's sending account.")
        instance = self.instance
        self.initial.setdefault("touchpoint", "promotional" if instance.promotional else "transactional")
        if instance.pk:
            self.initial.setdefault("delay_days", instance.delay_days)
        chosen = self._chosen_campaign()
        self.known_links = campaign_links(chosen)
        if instance.link_url and instance.link_url not in self.known_links:
            self.initial.setdefault("link", OTHER_LINK)
            self.initial.setdefault("link_other", instance.link_url)
        elif instance.pk:
            self.initial.setdefault("link", instance.link_url)
        self.fields["link"].choices = link_choices(self.known_links)  # type: ignore[attr-defined]

    def _chosen_campaign(self) -> Campaign | None:
        raw = self.data.get(self.add_prefix("campaign")) if self.is_bound else None
        queryset = self.fields["campaign"].queryset  # type: ignore[attr-defined]
        if raw:
            return queryset.filter(pk=raw).first() if str(raw).isdigit() else None
        if self.instance.campaign_id:
            return queryset.filter(pk=self.instance.campaign_id).first()
        return None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        campaign: Campaign | None = data.get("campaign")
        event = data.get("event")
        sender: SenderAddress | None = data.get("sender")
        template: Template | None = data.get("template")
        if campaign is not None:
            if sender is not None and sender.sending_account_id != campaign.sending_account_id:
                self.add_error(
                    "sender",
                    _("Choose a sender address of the campaign's sending account, “%(account)s”.")
                    % {"account": campaign.sending_account.name},
                )
            account_client = campaign.sending_account.client_id
            if template is not None and template.client_id not in (None, account_client):
                self.add_error("template", _("This template belongs to another client than the campaign."))
            if not tracking_enabled(campaign.tracking, campaign.template.tracking, campaign.promotional):
                self.add_error(
                    "campaign",
                    _(
                        "This campaign does not track opens and clicks, so the rule could never see them. "
                        "Turn tracking on for the campaign or its template, or choose another campaign."
                    ),
                )
        if event == TriggerRule.Event.CLICK:
            choice = data.get("link", ANY_LINK)
            if choice == OTHER_LINK:
                url = (data.get("link_other") or "").strip()
                if not url:
                    self.add_error("link_other", _("Enter the address of the link."))
                elif not url.lower().startswith(("http://", "https://")) or not is_safe_url(url):
                    self.add_error("link_other", _("Enter the full address, starting with https:// or http://."))
                data["link_url"] = url
            else:
                data["link_url"] = choice or ""
        else:
            data["link_url"] = ""
        if event == TriggerRule.Event.NOT_OPENED:
            if not data.get("delay_days") and "delay_days" not in self.errors:
                self.add_error("delay_days", _("Enter after how many days (1 to %(max)d).") % {"max": MAX_DELAY_DAYS})
        else:
            data["delay_days"] = None
        promotional = data.get("touchpoint") == "promotional"
        if (
            template is not None
            and promotional
            and UNSUBSCRIBE_MARKER not in template.body
            and UNSUBSCRIBE_MARKER not in template.text
        ):
            self.add_error(
                "template",
                _(
                    "Promotional mail needs an unsubscribe link in its content: add "
                    "{{ message.unsubscribe_url }} to the template, or send it as transactional."
                ),
            )
        return data

    def save(self, commit: bool = True) -> TriggerRule:
        rule = super().save(commit=False)
        rule.link_url = self.cleaned_data.get("link_url", "")
        rule.delay_days = self.cleaned_data.get("delay_days")
        rule.promotional = self.cleaned_data["touchpoint"] == "promotional"
        if commit:
            rule.save()
        return rule


def link_choices(links: list[str]) -> list[tuple[str, str]]:
    return [
        (ANY_LINK, _("Any link")),
        *[(url, url) for url in links],
        (OTHER_LINK, _("Another address…")),
    ]


class WebhookEndpointForm(forms.ModelForm[WebhookEndpoint]):
    event_types = forms.MultipleChoiceField(
        label=gettext_lazy("Events to send"),
        choices=[(value, MessageEvent.Type(value).label) for value in WEBHOOK_EVENT_TYPES],
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "description", "client", "event_types", "include_machine")
        widgets = {"url": forms.URLInput(attrs={"placeholder": "https://example.com/xes-events"})}
        help_texts = {
            "url": gettext_lazy("We POST the events here as JSON, signed with your endpoint's secret."),
            "description": gettext_lazy("For you, e.g. “CRM sync”."),
        }

    def __init__(self, *args: Any, membership: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.membership = membership
        if membership.is_client_user:
            del self.fields["client"]
        else:
            self.fields["client"].queryset = Client.objects.filter(organisation=membership.organisation_id)  # type: ignore[attr-defined]
            self.fields["client"].empty_label = _("All clients and accounts")  # type: ignore[attr-defined]
        if not self.instance.pk and not self.initial.get("event_types"):
            self.initial["event_types"] = list(DEFAULT_WEBHOOK_EVENT_TYPES)

    def clean_url(self) -> str:
        url = self.cleaned_data["url"].strip()
        try:
            netguard.check_url(url)
        except netguard.UnsafeDestination as exc:
            raise forms.ValidationError(str(exc)) from exc
        return url
