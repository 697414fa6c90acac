"""Domain names: normalised to lower-case punycode for storage, shown readable."""

from __future__ import annotations

import idna
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _


def normalise_domain(raw: str) -> str:
    """Lower-case a domain name and encode an international one as punycode (IDNA 2008 with UTS 46,
    so that ``straße.example`` stays itself instead of becoming ``strasse.example``)."""
    domain = raw.strip().rstrip(".").lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValidationError(_("The domain “%(domain)s” is not a valid domain name.") % {"domain": domain}) from exc


def domain_display(ascii_domain: str) -> str:
    """The readable (Unicode) form of a punycode domain, for display."""
    try:
        return idna.decode(ascii_domain)
    except idna.IDNAError:
        return ascii_domain
