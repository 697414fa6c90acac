"""The reputation e-mails to customers: the owners of the organisation hear of every change of a
sending account's standing. Subject, text and HTML templates live in
``templates/deliverability/reputation/emails/`` (same shape as :mod:`xes_portal.lib.emails`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation

from accounts.models import Membership
from deliverability.reputation.models import StandingChange

TEMPLATES = "deliverability/reputation/emails"


def _send(name: str, to: str, context: dict[str, Any]) -> None:
    ctx = {"site_url": settings.SITE_URL, **context}
    with translation.override(translation.get_language() or settings.LANGUAGE_CODE):
        subject = " ".join(render_to_string(f"{TEMPLATES}/{name}-subject.txt", ctx).split())
        text = render_to_string(f"{TEMPLATES}/{name}-body.txt", ctx)
        html = render_to_string(f"{TEMPLATES}/{name}-body.html", ctx)
    message = EmailMultiAlternatives(subject=subject, body=text, to=[to])
    message.attach_alternative(html, "text/html")
    message.send()


def standing_changed(change: StandingChange) -> int:
    """Tell every owner of the account's organisation what changed, why, and what to do."""
    from deliverability.reputation.advice import STANDING_MEANING

    account = change.sending_account
    organisation = account.organisation
    owners = Membership.objects.filter(organisation=organisation, role=Membership.Role.OWNER).select_related("user")
    context = {
        "organisation_name": organisation.name,
        "account_name": account.name,
        "old": change.get_old_display(),
        "new": change.get_new_display(),
        "new_value": change.new,
        "reason": change.reason,
        "meaning": STANDING_MEANING.get(change.new, ""),
        "url": f"{settings.SITE_URL}{reverse('deliverability:reputation', args=[account.pk])}",
    }
    sent = 0
    for membership in owners:
        _send("standing-changed", membership.user.email, context)
        sent += 1
    return sent
