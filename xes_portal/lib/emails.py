"""System e-mails: one function per message, each with subject, text and HTML templates
under ``templates/emails/`` (``<name>-subject.txt``, ``<name>-body.txt``, ``<name>-body.html``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils import translation


def _send(name: str, to: str, context: dict[str, Any], language: str | None = None) -> None:
    ctx = {"site_url": settings.SITE_URL, **context}
    with translation.override(language or translation.get_language() or settings.LANGUAGE_CODE):
        subject = " ".join(render_to_string(f"emails/{name}-subject.txt", ctx).split())
        text = render_to_string(f"emails/{name}-body.txt", ctx)
        html = render_to_string(f"emails/{name}-body.html", ctx)
    message = EmailMultiAlternatives(subject=subject, body=text, to=[to])
    message.attach_alternative(html, "text/html")
    message.send()


def sender_verification(
    to: str, *, verify_url: str, sender_display: str, account_name: str, organisation_name: str, valid_hours: int
) -> None:
    """Ask the owner of a From address to confirm it (PRODUCT.md: within 24 hours)."""
    _send(
        "sender-verification",
        to,
        {
            "verify_url": verify_url,
            "sender_display": sender_display,
            "account_name": account_name,
            "organisation_name": organisation_name,
            "valid_hours": valid_hours,
        },
    )


def invitation(
    to: str, *, accept_url: str, organisation_name: str, role_label: str, invited_by: str, valid_days: int
) -> None:
    """Invite someone to join an organisation with a role."""
    _send(
        "invitation",
        to,
        {
            "accept_url": accept_url,
            "organisation_name": organisation_name,
            "role_label": role_label,
            "invited_by": invited_by,
            "valid_days": valid_days,
        },
    )
