"""Checking Amazon SNS HTTP(S) messages: nothing here trusts the sender until the signature holds.

The order of the checks matters (:func:`verify_message`):

1. the body is a JSON object with the fields its ``Type`` needs, all strings, within sane sizes;
2. the ``TopicArn`` is one of ours (:func:`allowed_topics`), before anything costs us a request;
3. the ``Timestamp`` is recent (a replay of an old message is refused even after its row is pruned);
4. the ``SigningCertURL`` is ``https://sns.<region>.amazonaws.com[.cn]/...pem`` exactly: no other
   host, no look-alike, no user info, no port, no query; only then is it fetched, with a short
   timeout, no redirects and a size limit (:func:`fetch_certificate_pem`, the one network call);
5. the certificate parses, holds an RSA key and is valid now; a good one is cached by URL, a failed
   fetch never is;
6. the signature (``SignatureVersion`` 1: SHA1withRSA, 2: SHA256withRSA) verifies over the canonical
   string SNS defines for the message's type.

``SubscribeURL`` is part of the signed string but is never requested: subscriptions are confirmed
with the SNS API's ``ConfirmSubscription`` (:mod:`deliverability.webhooks.processing`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import urllib3
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

logger = logging.getLogger(__name__)

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"

# The fields each type signs, in the order of the canonical string (AWS: "Verifying the signatures of
# Amazon SNS messages"). ``Subject`` is signed only when the notification has one.
SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    UNSUBSCRIBE_CONFIRMATION: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
OPTIONAL_FIELDS = frozenset({"Subject"})
ENVELOPE_FIELDS = ("SignatureVersion", "Signature", "SigningCertURL")
HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}

# https, the regional SNS host and nothing else (no user info, no port, no query, no fragment), a path
# to a .pem file. Hosts are compared in full: ``sns.us-east-1.amazonaws.com.evil.com`` does not match.
CERT_URL_RE = re.compile(
    r"\Ahttps://sns\.[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}\.amazonaws\.com(?:\.cn)?/[A-Za-z0-9_-][A-Za-z0-9._/-]*\.pem\Z"
)
MAX_FIELD_LENGTH = 300  # ids, ARNs, URLs, timestamps: SNS's own are far shorter
MAX_MESSAGE_LENGTH = 262_144  # SNS's message size limit
MAX_CERT_BYTES = 64 * 1024
CERT_FETCH_TIMEOUT = urllib3.Timeout(connect=2.0, read=3.0)
CERT_CACHE_SECONDS = 24 * 60 * 60
CERT_CACHE_PREFIX = "sns-cert:"
# SNS retries an HTTP delivery for at most an hour; a day leaves room for clock skew and slow queues,
# and stays well inside the retention of stored notifications (dedupe by MessageId still holds).
MAX_AGE = timedelta(days=1)
MAX_FUTURE = timedelta(minutes=15)


class Rejected(Exception):
    """The message is refused; ``status`` and the short ``code`` go into the JSON answer."""

    def __init__(self, code: str, status: int = 400, detail: str = "") -> None:
        super().__init__(detail or code)
        self.code = code
        self.status = status
        self.detail = detail or code


class CertificateUnavailable(Exception):
    """The certificate could not be fetched right now (network, timeout, SNS's 5xx): worth a retry."""


@dataclass(frozen=True)
class SnsMessage:
    """A message whose signature, topic and certificate checked out."""

    fields: dict[str, str]

    @property
    def type(self) -> str:
        return self.fields["Type"]

    @property
    def message_id(self) -> str:
        return self.fields["MessageId"]

    @property
    def topic_arn(self) -> str:
        return self.fields["TopicArn"]


def allowed_topics() -> frozenset[str]:
    """``SES_EVENT_TOPIC_ARN`` plus ``SNS_TOPIC_ARNS`` (a list, or a comma-separated string).

    Provider set-ups do not store a topic of their own: every configuration set publishes to
    ``SES_EVENT_TOPIC_ARN`` (:mod:`deliverability.providers.ses`).
    """
    topics: set[str] = set()
    single = getattr(settings, "SES_EVENT_TOPIC_ARN", "") or ""
    if single.strip():
        topics.add(single.strip())
    extra: Any = getattr(settings, "SNS_TOPIC_ARNS", ()) or ()
    if isinstance(extra, str):
        extra = extra.split(",")
    topics.update(str(item).strip() for item in extra if str(item).strip())
    return frozenset(topics)


def parse_body(body: bytes) -> dict[str, str]:
    """The SNS fields of ``body``; raises :class:`Rejected` for anything that is not a well-formed
    SNS message of a known type."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Rejected("invalid_json") from exc
    if not isinstance(data, dict):
        raise Rejected("invalid_json")
    kind = data.get("Type")
    if not isinstance(kind, str) or kind not in SIGNED_FIELDS:
        raise Rejected("unknown_type")
    fields: dict[str, str] = {}
    for name in (*SIGNED_FIELDS[kind], *ENVELOPE_FIELDS):
        value = data.get(name)
        if value is None and name in OPTIONAL_FIELDS:
            continue
        if not isinstance(value, str) or not value:
            raise Rejected("missing_field", detail=f"missing or invalid field {name}")
        limit = MAX_MESSAGE_LENGTH if name in ("Message", "Signature", "Token") else MAX_FIELD_LENGTH
        if len(value) > limit:
            raise Rejected("field_too_long", detail=f"field {name} is too long")
        fields[name] = value
    return fields


def check_headers(fields: Mapping[str, str], headers: Mapping[str, str]) -> None:
    """SNS repeats type, id and topic in ``x-amz-sns-*`` headers; when present they must agree."""
    for header, name in (
        ("x-amz-sns-message-type", "Type"),
        ("x-amz-sns-message-id", "MessageId"),
        ("x-amz-sns-topic-arn", "TopicArn"),
    ):
        value = headers.get(header)
        if value is not None and value != fields[name]:
            raise Rejected("header_mismatch", detail=f"{header} does not match {name}")


def check_topic(fields: Mapping[str, str]) -> None:
    if fields["TopicArn"] not in allowed_topics():
        raise Rejected("topic_not_allowed", status=403)


def check_timestamp(fields: Mapping[str, str], now: datetime) -> None:
    try:
        stamp = datetime.fromisoformat(fields["Timestamp"])
    except ValueError as exc:
        raise Rejected("invalid_timestamp") from exc
    if stamp.tzinfo is None:
        raise Rejected("invalid_timestamp")
    if stamp < now - MAX_AGE or stamp > now + MAX_FUTURE:
        raise Rejected("stale_timestamp")


def check_certificate_url(url: str) -> None:
    """Raise :class:`Rejected` unless ``url`` is an SNS signing certificate URL (see ``CERT_URL_RE``)."""
    if not CERT_URL_RE.match(url) or "/../" in url or "/./" in url or "//" in url[len("https://") :]:
        raise Rejected("bad_certificate_url")


def canonical_string(fields: Mapping[str, str]) -> bytes:
    """What SNS signs: ``name\\nvalue\\n`` for each signed field of the type, in order."""
    parts: list[str] = []
    for name in SIGNED_FIELDS[fields["Type"]]:
        if name in fields:
            parts.append(f"{name}\n{fields[name]}\n")
    return "".join(parts).encode("utf-8")


def fetch_certificate_pem(url: str) -> bytes:
    """GET ``url`` (already checked to be an SNS certificate URL): the only request this module makes.

    Short timeouts, no retries, no redirects, at most ``MAX_CERT_BYTES``. Raises
    :class:`CertificateUnavailable` for what may pass (network, timeout, 5xx) and :class:`Rejected`
    for what will not (any other status, an oversized answer).
    """
    http = urllib3.PoolManager(timeout=CERT_FETCH_TIMEOUT, retries=False)
    try:
        response = http.request("GET", url, redirect=False, preload_content=False)
        try:
            if response.status >= 500:
                raise CertificateUnavailable(f"HTTP {response.status}")
            if response.status != 200:
                raise Rejected("certificate_not_found", detail=f"certificate URL answered HTTP {response.status}")
            data = response.read(MAX_CERT_BYTES + 1)
        finally:
            response.release_conn()
    except urllib3.exceptions.HTTPError as exc:
        raise CertificateUnavailable(str(exc)) from exc
    finally:
        http.clear()
    if len(data) > MAX_CERT_BYTES:
        raise Rejected("bad_certificate", detail="certificate too large")
    return bytes(data)


def _cache_key(url: str) -> str:
    return CERT_CACHE_PREFIX + hashlib.sha256(url.encode()).hexdigest()


def _load_valid(pem: bytes, now: datetime) -> x509.Certificate:
    """The certificate in ``pem`` if it holds an RSA key and is valid at ``now``."""
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise Rejected("bad_certificate", detail="not a PEM certificate") from exc
    if not isinstance(certificate.public_key(), rsa.RSAPublicKey):
        raise Rejected("bad_certificate", detail="not an RSA certificate")
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise Rejected("certificate_expired", detail="certificate not valid now")
    return certificate


def signing_certificate(url: str, now: datetime) -> x509.Certificate:
    """The certificate at ``url`` (checked first), from the cache or fetched; only good ones are cached,
    for a day at most and never beyond their expiry."""
    check_certificate_url(url)
    key = _cache_key(url)
    cached = cache.get(key)
    if isinstance(cached, bytes):
        try:
            return _load_valid(cached, now)
        except Rejected:
            cache.delete(key)
    pem = fetch_certificate_pem(url)
    certificate = _load_valid(pem, now)
    seconds = int(min(CERT_CACHE_SECONDS, (certificate.not_valid_after_utc - now).total_seconds()))
    if seconds > 0:
        cache.set(key, pem, seconds)
    return certificate


def check_signature(fields: Mapping[str, str], certificate: x509.Certificate) -> None:
    algorithm = HASHES.get(fields["SignatureVersion"])
    if algorithm is None:
        raise Rejected("unsupported_signature_version")
    try:
        signature = base64.b64decode(fields["Signature"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Rejected("invalid_signature") from exc
    public_key = certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)  # _load_valid refused every other key type
    try:
        public_key.verify(signature, canonical_string(fields), padding.PKCS1v15(), algorithm())
    except InvalidSignature as exc:
        raise Rejected("invalid_signature") from exc


def verify_message(body: bytes, headers: Mapping[str, str], now: datetime | None = None) -> SnsMessage:
    """The checked message of an SNS POST (steps in the module docstring).

    Raises :class:`Rejected` (answer its status) or :class:`CertificateUnavailable` (answer 503 so that
    SNS retries).
    """
    now = now or timezone.now()
    fields = parse_body(body)
    if fields["SignatureVersion"] not in HASHES:
        raise Rejected("unsupported_signature_version")
    check_headers(fields, headers)
    check_topic(fields)
    check_timestamp(fields, now.astimezone(UTC))
    certificate = signing_certificate(fields["SigningCertURL"], now.astimezone(UTC))
    check_signature(fields, certificate)
    return SnsMessage(fields=fields)


def topic_region(topic_arn: str) -> str:
    """``eu-central-1`` of ``arn:aws:sns:eu-central-1:123456789012:name`` (empty if not an ARN)."""
    parts = topic_arn.split(":")
    return parts[3] if len(parts) >= 6 and parts[0] == "arn" and parts[2] == "sns" else ""
