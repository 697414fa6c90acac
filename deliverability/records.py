"""The DNS record values the domain wizard shows for copy and paste: DKIM keys and records, SPF
records (fresh or merged into what a domain already publishes) and DMARC records.

Generated SPF and DMARC records pass our own checks (:mod:`deliverability.dns`) and are written to
be read the same way by RFC 7489 and RFC 9989 (DMARCbis) receivers.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from deliverability.dns.spf import SpfSyntaxError, is_spf_record, parse_spf

DKIM_KEY_BITS = 2048
TXT_CHUNK = 255  # bytes per DNS character-string (RFC 1035 3.3)
SPF_QUALIFIERS = ("~", "-", "?")
DMARC_POLICIES = ("none", "quarantine", "reject")


def generate_dkim_keypair() -> tuple[str, str]:
    """A new RSA 2048 key pair: (private key as PKCS#8 PEM, public key as base64 of the DER
    SubjectPublicKeyInfo, which is what a DKIM record's ``p=`` holds)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=DKIM_KEY_BITS)
    private_pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode("ascii")
    public_der = key.public_key().public_bytes(
        encoding=serialization.Encoding.DER, format=serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, base64.b64encode(public_der).decode("ascii")


def dkim_record_value(public_key_b64: str) -> str:
    """The TXT value to publish at ``<selector>._domainkey.<domain>``."""
    return f"v=DKIM1; k=rsa; p={''.join(public_key_b64.split())}"


def txt_chunks(value: str) -> list[str]:
    """``value`` cut into character-strings of at most 255 bytes, as a TXT record needs them
    (receivers join them again). Never cuts inside a multi-byte character."""
    chunks: list[str] = []
    current = ""
    size = 0
    for char in value:
        width = len(char.encode("utf-8"))
        if size + width > TXT_CHUNK:
            chunks.append(current)
            current, size = "", 0
        current += char
        size += width
    if current or not chunks:
        chunks.append(current)
    return chunks


def _unique(items: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        item = item.strip().rstrip(".").lower()
        if item and item not in seen:
            seen.append(item)
    return seen


def spf_record(includes: list[str], all_qualifier: str = "~") -> str:
    """A fresh SPF record authorising the given ``include:`` targets, ending in ``<qualifier>all``.

    ``+all`` is refused: it would let anyone send as the domain."""
    if all_qualifier not in SPF_QUALIFIERS:
        raise ValueError(f"unsupported all qualifier {all_qualifier!r}")
    terms = ["v=spf1", *(f"include:{include}" for include in _unique(includes)), f"{all_qualifier}all"]
    return " ".join(terms)


def merged_spf(existing: str | None, include: str) -> str:
    """Guidance for a domain that may already publish SPF: keep everything that is there and add
    ``include:<include>`` in front of the ``all`` term (or of the modifiers when there is none).

    Without a readable existing record, a fresh one. An existing ``+all`` (or bare ``all``) is
    turned into ``~all``: we would otherwise suggest a record our own check calls dangerous."""
    target = include.strip().rstrip(".").lower()
    if not existing or not is_spf_record(existing):
        return spf_record([target])
    try:
        terms = parse_spf(existing)
    except SpfSyntaxError:
        return spf_record([target])
    words = ["v=spf1"]
    inserted = any(term.name == "include" and term.target == target for term in terms)
    for term in terms:
        if not inserted and (term.modifier or term.name == "all"):
            words.append(f"include:{target}")
            inserted = True
        words.append("~all" if term.name == "all" and term.qualifier == "+" else term.text)
    if not inserted:
        words.append(f"include:{target}")
    return " ".join(words)


def _mailto(address: str) -> str:
    address = address.strip()
    return address if address.lower().startswith("mailto:") else f"mailto:{address}"


def dmarc_record(
    policy: str,
    rua: list[str] | None = None,
    subdomain_policy: str | None = None,
    *,
    ruf: list[str] | None = None,
    adkim: str | None = None,
    aspf: str | None = None,
    fo: str | None = None,
) -> str:
    """A DMARC record: ``v`` first and ``p`` second (as RFC 7489 readers expect), only tags both
    RFC 7489 and RFC 9989 define (no ``pct``/``rf``/``ri``, no ``np``/``t``/``psd``).

    ``rua``/``ruf`` take plain addresses or ``mailto:`` URIs."""
    for tag, value in (("p", policy), ("sp", subdomain_policy)):
        if value is not None and value not in DMARC_POLICIES:
            raise ValueError(f"invalid DMARC {tag}={value!r}")
    for tag, value in (("adkim", adkim), ("aspf", aspf)):
        if value is not None and value not in ("r", "s"):
            raise ValueError(f"invalid DMARC {tag}={value!r}")
    tags = ["v=DMARC1", f"p={policy}"]
    if subdomain_policy:
        tags.append(f"sp={subdomain_policy}")
    if rua:
        tags.append("rua=" + ",".join(_mailto(address) for address in rua))
    if ruf:
        tags.append("ruf=" + ",".join(_mailto(address) for address in ruf))
    if adkim:
        tags.append(f"adkim={adkim}")
    if aspf:
        tags.append(f"aspf={aspf}")
    if fo:
        tags.append(f"fo={fo}")
    return "; ".join(tags)
