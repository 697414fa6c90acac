"""Signed Amazon SNS messages for the webhook tests, made with a test CA and signing certificate
generated here (never AWS's), and the SES events they carry.

The canonical string is built here from AWS's description, independently of the code under test,
so that a wrong canonical string in :mod:`deliverability.webhooks.sns` makes the tests fail.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

REGION = "eu-central-1"
AWS_ACCOUNT = "123456789012"
TOPIC = f"arn:aws:sns:{REGION}:{AWS_ACCOUNT}:xes-events"
OTHER_TOPIC = f"arn:aws:sns:{REGION}:{AWS_ACCOUNT}:xes-events-b"
FOREIGN_TOPIC = f"arn:aws:sns:{REGION}:999999999999:someone-elses-topic"
CERT_URL = f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass
class SigningIdentity:
    """A private key and its certificate (PEM), issued by the test CA."""

    key: rsa.RSAPrivateKey
    pem: bytes


def make_ca() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("XES Test Root CA"))
        .issuer_name(_name("XES Test Root CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=30))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def issue(
    ca: tuple[rsa.RSAPrivateKey, x509.Certificate],
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> SigningIdentity:
    """A signing certificate like SNS's (``sns.amazonaws.com``), signed by the test CA."""
    ca_key, ca_cert = ca
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("sns.amazonaws.com"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return SigningIdentity(key=key, pem=certificate.public_bytes(serialization.Encoding.PEM))


SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


def string_to_sign(message: dict[str, Any]) -> bytes:
    """AWS: each signed field present, as ``name\\nvalue\\n``, in byte order of the names."""
    return "".join(f"{name}\n{message[name]}\n" for name in SIGNED[message["Type"]] if name in message).encode()


def sign(message: dict[str, Any], identity: SigningIdentity, version: str = "1") -> dict[str, Any]:
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = identity.key.sign(string_to_sign(message), padding.PKCS1v15(), algorithm)
    return {**message, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode()}


def timestamp(moment: datetime | None = None) -> str:
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def notification(
    event: dict[str, Any] | str,
    identity: SigningIdentity,
    *,
    version: str = "1",
    topic: str = TOPIC,
    message_id: str | None = None,
    cert_url: str = CERT_URL,
    subject: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """A signed SNS ``Notification`` carrying ``event`` (a dict is sent as JSON, a str as it is)."""
    message: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": message_id or str(uuid.uuid4()),
        "TopicArn": topic,
        "Message": event if isinstance(event, str) else json.dumps(event),
        "Timestamp": timestamp(at),
        "SigningCertURL": cert_url,
        "UnsubscribeURL": f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic}:x",
    }
    if subject is not None:
        message["Subject"] = subject
    return sign(message, identity, version)


def confirmation(
    identity: SigningIdentity,
    *,
    kind: str = "SubscriptionConfirmation",
    topic: str = TOPIC,
    subscribe_url: str = "",
    token: str = "2336412f37fb687f5d51e6e2425dacbba2b7cb54",
    version: str = "1",
) -> dict[str, Any]:
    """A signed ``SubscriptionConfirmation`` (or ``UnsubscribeConfirmation``)."""
    message = {
        "Type": kind,
        "MessageId": str(uuid.uuid4()),
        "Token": token,
        "TopicArn": topic,
        "Message": f"You have chosen to subscribe to the topic {topic}.",
        "SubscribeURL": subscribe_url
        or f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={topic}&Token={token}",
        "Timestamp": timestamp(),
        "SigningCertURL": CERT_URL,
    }
    return sign(message, identity, version)


def ses_event(
    event_type: str,
    *,
    account_id: int | None = None,
    configuration_set: str | None = None,
    recipients: tuple[str, ...] = ("reader@example.net",),
    message_id: str | None = None,
    bounce_type: str = "Permanent",
    feedback_type: str = "abuse",
) -> dict[str, Any]:
    """An SES event in the event-publishing format, tagged like our pipeline tags its mail."""
    tags: dict[str, list[str]] = {"ses:from-domain": ["alpha.example"]}
    if configuration_set is not None:
        tags["ses:configuration-set"] = [configuration_set]
    if account_id is not None:
        tags["xes_account"] = [str(account_id)]
        tags["xes_message"] = ["42"]
    event: dict[str, Any] = {
        "eventType": event_type,
        "mail": {
            "timestamp": timestamp(),
            "source": "news@alpha.example",
            "messageId": message_id or f"0102018d-{uuid.uuid4()}-000000",
            "destination": list(recipients),
            "tags": tags,
        },
    }
    now = timestamp()
    if event_type == "Bounce":
        event["bounce"] = {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": r, "action": "failed", "status": "5.1.1"} for r in recipients],
            "timestamp": now,
            "feedbackId": str(uuid.uuid4()),
        }
    elif event_type == "Complaint":
        event["complaint"] = {
            "complainedRecipients": [{"emailAddress": r} for r in recipients],
            "timestamp": now,
            "feedbackId": str(uuid.uuid4()),
            "complaintFeedbackType": feedback_type,
        }
    elif event_type == "Delivery":
        event["delivery"] = {"timestamp": now, "recipients": list(recipients), "smtpResponse": "250 ok"}
    else:
        event[event_type[:1].lower() + event_type[1:]] = {"timestamp": now}
    return event


def headers_for(message: dict[str, Any]) -> dict[str, str]:
    """The ``x-amz-sns-*`` headers SNS sends with a message."""
    return {
        "x-amz-sns-message-type": message["Type"],
        "x-amz-sns-message-id": message["MessageId"],
        "x-amz-sns-topic-arn": message["TopicArn"],
    }
