"""Render one outgoing message and build its MIME bytes: the pipeline's one seam to the renderer.

The renderer is :mod:`campaigns.rendering` (``prepare(template, rules)`` once per template, then
``render`` and ``build_mime`` per recipient). Templates are prepared once per worker process and
kept while neither the template nor the organisation's rules change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Max

from accounts.models import SenderAddress
from campaigns.models import Campaign, Rule, Template, tracking_enabled
from campaigns.rendering import PreparedTemplate, prepare
from campaigns.tracking.links import LinkIds, Tracking, tracking_base_url


@dataclass
class Outgoing:
    """Everything needed to build one message's bytes."""

    message_id: int
    token: str
    to: str
    template: Template
    sender: SenderAddress
    promotional: bool
    contact: dict[str, Any]
    data: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def unsubscribe_url(token: str) -> str:
    return f"{settings.SITE_URL}/u/{token}"


def mail_headers(outgoing: Outgoing) -> dict[str, str]:
    """Headers the message type requires: RFC 8058 one-click unsubscribe on promotional mail."""
    headers: dict[str, str] = {}
    if outgoing.promotional:
        headers["List-Unsubscribe"] = f"<{unsubscribe_url(outgoing.token)}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


class Builder:
    """Prepares templates once per process and renders + builds messages with them.

    Whether a template or a rule changed is checked at most every :data:`RECHECK_SECONDS` per
    template (one small query), not for every message."""

    RECHECK_SECONDS = 5.0

    def __init__(self) -> None:
        self._prepared: dict[int, tuple[tuple[datetime, datetime | None], PreparedTemplate, float]] = {}
        self._campaign_tracking: dict[int, tuple[bool | None, float]] = {}
        self._link_ids = LinkIds()

    def _version(self, template: Template) -> tuple[datetime, datetime | None]:
        updated = Template.objects.filter(pk=template.pk).values_list("updated_at", flat=True).first()
        rules = Rule.objects.filter(organisation_id=template.organisation_id).aggregate(v=Max("updated_at"))["v"]
        return (updated or template.updated_at, rules)

    def prepared(self, template: Template) -> PreparedTemplate:
        """The renderer's prepared template, prepared again after the template or a rule changed."""
        cached = self._prepared.get(template.pk)
        now = time.monotonic()
        if cached is not None and now - cached[2] < self.RECHECK_SECONDS:
            return cached[1]
        version = self._version(template)
        if cached is not None and cached[0] == version:
            self._prepared[template.pk] = (version, cached[1], now)
            return cached[1]
        fresh = Template.objects.get(pk=template.pk)
        prepared = prepare(fresh, list(Rule.objects.filter(organisation_id=template.organisation_id)))
        self._prepared[template.pk] = (version, prepared, now)
        return prepared

    def _campaign_setting(self, campaign_id: int) -> bool | None:
        cached = self._campaign_tracking.get(campaign_id)
        now = time.monotonic()
        if cached is not None and now - cached[1] < self.RECHECK_SECONDS:
            return cached[0]
        value = Campaign.objects.filter(pk=campaign_id).values_list("tracking", flat=True).first()
        self._campaign_tracking[campaign_id] = (value, now)
        return value

    def tracking(self, outgoing: Outgoing) -> Tracking | None:
        """How to track ``outgoing`` (``None`` when its campaign or template turns tracking off, or
        it is transactional without either turning it on)."""
        campaign_id = outgoing.extra.get("campaign_id")
        campaign_setting = self._campaign_setting(campaign_id) if campaign_id else None
        if not tracking_enabled(campaign_setting, outgoing.template.tracking, outgoing.promotional):
            return None
        base = tracking_base_url(outgoing.sender.sending_account_id, outgoing.sender.email)
        site = settings.SITE_URL.rstrip("/")
        return Tracking(
            base=base,
            message_id=outgoing.message_id,
            organisation_id=outgoing.template.organisation_id,
            link_ids=self._link_ids,
            skip_prefixes=(f"{site}/u/", f"{site}/t/", f"{base}/t/"),
        )

    def build(self, outgoing: Outgoing) -> bytes:
        """The MIME bytes of ``outgoing``. Raises whatever the renderer raises for bad content."""
        message = {
            "id": outgoing.message_id,
            "token": outgoing.token,
            "unsubscribe_url": unsubscribe_url(outgoing.token),
        }
        message.update(outgoing.extra)
        domain = outgoing.sender.email.rpartition("@")[2]
        prepared = self.prepared(outgoing.template)
        tracking = self.tracking(outgoing)
        rendered = prepared.render(outgoing.contact, outgoing.data, message, tracked=tracking is not None)
        return prepared.build_mime(
            rendered,
            from_header=(outgoing.sender.display_name, outgoing.sender.email),
            to=outgoing.to,
            message_id_domain=domain,
            headers=mail_headers(outgoing),
            tracking=tracking,
        )


def render_and_build(outgoing: Outgoing, builder: Builder | None = None) -> bytes:
    """One message's bytes (a module-level builder is used when none is given)."""
    return (builder or _default_builder).build(outgoing)


_default_builder = Builder()
