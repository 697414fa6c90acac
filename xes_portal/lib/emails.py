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


def pool_level(to: str, *, organisation_name: str, level: int, used: int, included: int) -> None:
    """The organisation's pool of included e-mails reached 80% or 100%."""
    _send(
        "pool-level", to, {"organisation_name": organisation_name, "level": level, "used": used, "included": included}
    )


def term_expired(to: str, *, organisation_name: str, term: Any, expired: int) -> None:
    """A plan term ended; what was left of it expired (no rollover)."""
    _send("term-expired", to, {"organisation_name": organisation_name, "term": term, "expired": expired})


def order_decided(to: str, *, organisation_name: str, order: Any, approved: bool) -> None:
    """The XES team approved or rejected an order."""
    _send("order-decided", to, {"organisation_name": organisation_name, "order": order, "approved": approved})


def client_cap_reached(to: str, *, organisation_name: str, client_name: str, used: int, cap: int) -> None:
    """A client with a soft cap has used its yearly allocation."""
    _send(
        "client-cap-reached",
        to,
        {"organisation_name": organisation_name, "client_name": client_name, "used": used, "cap": cap},
    )


def dns_drift(
    to: str,
    *,
    organisation_name: str,
    domain: str,
    account_name: str,
    records: list[dict[str, Any]],
    unverified: bool,
    url: str,
) -> None:
    """DNS records of a domain that were correct are now missing or wrong (the daily re-check)."""
    _send(
        "dns-drift",
        to,
        {
            "organisation_name": organisation_name,
            "domain": domain,
            "account_name": account_name,
            "records": records,
            "unverified": unverified,
            "url": url,
        },
    )
