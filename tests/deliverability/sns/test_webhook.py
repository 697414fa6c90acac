"""``POST /webhooks/ses/``: what is stored and answered for genuine, forged and odd SNS messages.

Every forged or malformed message answers 4xx with a short JSON error (never 500) and stores
nothing; genuine ones are stored raw first, answered 200 and processed by a job, once per MessageId.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import django_rq
import pytest
from django.db import connection
from django.test import Client as HttpClient

from deliverability.models import SnsNotification
from deliverability.webhooks.sns import CertificateUnavailable
from tests.deliverability.sns.conftest import URL, CertificateServer, Post
from tests.deliverability.sns.signing import (
    CERT_URL,
    FOREIGN_TOPIC,
    OTHER_TOPIC,
    TOPIC,
    SigningIdentity,
    headers_for,
    issue,
    notification,
    ses_event,
    sign,
)

pytestmark = pytest.mark.django_db


def _queued() -> int:
    return django_rq.get_queue("default").count


def _refused(response: Any, status: int, code: str | None = None) -> None:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    if code is not None:
        assert response.json() == {"error": code}
    assert not SnsNotification.objects.exists()
    assert _queued() == 0


# --- genuine messages ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signed_notification_is_stored_raw_and_queued(post: Post, identity: SigningIdentity, version: str) -> None:
    message = notification(ses_event("Delivery"), identity, version=version)
    response = post(message)
    assert response.status_code == 200
    assert response.json() == {"status": "stored"}
    stored = SnsNotification.objects.get()
    assert stored.sns_message_id == message["MessageId"]
    assert stored.topic_arn == TOPIC
    assert stored.type == SnsNotification.Type.NOTIFICATION
    assert json.loads(stored.body) == message
    assert stored.outcome == SnsNotification.Outcome.PENDING
    assert _queued() == 1


def test_a_notification_with_a_subject_verifies(post: Post, identity: SigningIdentity) -> None:
    response = post(notification(ses_event("Delivery"), identity, subject="Amazon SES Email Event Notification"))
    assert response.status_code == 200


def test_every_allowed_topic_is_accepted(post: Post, identity: SigningIdentity) -> None:
    assert post(notification(ses_event("Delivery"), identity, topic=OTHER_TOPIC)).status_code == 200


def test_the_headers_are_optional(post: Post, identity: SigningIdentity) -> None:
    assert post(notification(ses_event("Delivery"), identity), headers={}).status_code == 200


# --- forged certificates and signatures -------------------------------------------------------------


@pytest.mark.parametrize(
    "cert_url",
    [
        "https://evil.example/SimpleNotificationService-abc.pem",
        "http://sns.eu-central-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.eu-central-1.amazonaws.com.evil.com/SimpleNotificationService-abc.pem",
        "https://sns.eu-central-1.amazonaws.com@169.254.169.254/x.pem",
        "https://sns.eu-central-1.amazonaws.com:8443/SimpleNotificationService-abc.pem",
    ],
    ids=["other-host", "http", "look-alike", "userinfo", "port"],
)
def test_a_certificate_url_off_sns_is_refused_without_a_fetch(
    post: Post, identity: SigningIdentity, certificates: CertificateServer, cert_url: str
) -> None:
    # Even with the certificate "served" there, the URL is refused before any request.
    certificates.pems[cert_url] = identity.pem
    _refused(post(notification(ses_event("Delivery"), identity, cert_url=cert_url)), 400, "bad_certificate_url")
    assert certificates.calls == []


def test_a_wrong_signature_is_refused(post: Post, impostor: SigningIdentity) -> None:
    _refused(post(notification(ses_event("Delivery"), impostor)), 400, "invalid_signature")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Message", json.dumps(ses_event("Bounce", recipients=("victim@example.net",)))),
        ("MessageId", "00000000-0000-0000-0000-000000000000"),
        ("TopicArn", OTHER_TOPIC),  # allowed too: only the signature tells
        ("Type", "SubscriptionConfirmation"),
        ("Subject", "added"),
    ],
)
def test_a_tampered_field_breaks_the_signature(post: Post, identity: SigningIdentity, name: str, value: str) -> None:
    message = {**notification(ses_event("Delivery"), identity), name: value}
    response = post(message, headers={})
    assert response.status_code == 400
    assert not SnsNotification.objects.exists()


def test_a_tampered_timestamp_breaks_the_signature(post: Post, identity: SigningIdentity) -> None:
    message = notification(ses_event("Delivery"), identity)
    later = datetime.now(UTC) + timedelta(minutes=1)
    message["Timestamp"] = later.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    _refused(post(message), 400, "invalid_signature")


def test_a_certificate_that_expired_is_refused(
    post: Post, ca: Any, identity: SigningIdentity, certificates: CertificateServer
) -> None:
    expired = issue(
        ca, not_before=datetime.now(UTC) - timedelta(days=30), not_after=datetime.now(UTC) - timedelta(days=1)
    )
    certificates.pems[CERT_URL] = expired.pem
    _refused(post(notification(ses_event("Delivery"), expired)), 400, "certificate_expired")


def test_an_unavailable_certificate_answers_503_and_the_retry_passes(
    post: Post, identity: SigningIdentity, certificates: CertificateServer
) -> None:
    certificates.failures.append(CertificateUnavailable("timed out"))
    message = notification(ses_event("Delivery"), identity)
    response = post(message)
    assert response.status_code == 503  # SNS retries 5xx; a 4xx would drop the event
    assert response["Retry-After"]
    assert not SnsNotification.objects.exists()
    assert post(message).status_code == 200  # the failure was not cached
    assert certificates.calls == [CERT_URL, CERT_URL]


# --- topics ---------------------------------------------------------------------------------------


def test_a_foreign_topic_is_forbidden_and_nothing_is_stored(
    post: Post, identity: SigningIdentity, certificates: CertificateServer, caplog: Any
) -> None:
    _refused(post(notification(ses_event("Delivery"), identity, topic=FOREIGN_TOPIC)), 403, "topic_not_allowed")
    assert certificates.calls == []  # refused before the certificate costs a request
    assert "topic_not_allowed" in caplog.text  # a log line is all that is kept


def test_no_topic_is_allowed_without_settings(post: Post, identity: SigningIdentity, settings: Any) -> None:
    settings.SES_EVENT_TOPIC_ARN = ""
    settings.SNS_TOPIC_ARNS = []
    _refused(post(notification(ses_event("Delivery"), identity)), 403)


# --- malformed requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "invalid_json"),
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'"a string"', "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        (b"{}", "unknown_type"),
        (b'{"Type": "Gossip"}', "unknown_type"),
        (b'{"Type": ["Notification"]}', "unknown_type"),
        (b'{"Type": "Notification"}', "missing_field"),
    ],
)
def test_malformed_bodies_answer_400_with_a_short_error(post: Post, body: bytes, code: str) -> None:
    _refused(post(body), 400, code)


@pytest.mark.parametrize("field", ["Message", "MessageId", "Timestamp", "Signature", "SigningCertURL", "TopicArn"])
def test_a_missing_or_non_string_field_answers_400(post: Post, identity: SigningIdentity, field: str) -> None:
    message = notification(ses_event("Delivery"), identity)
    for broken in ({k: v for k, v in message.items() if k != field}, {**message, field: 12}, {**message, field: None}):
        response = post(json.dumps(broken).encode())
        assert response.status_code in (400, 403)
    assert not SnsNotification.objects.exists()


def test_a_stale_message_is_refused(post: Post, identity: SigningIdentity) -> None:
    old = notification(ses_event("Delivery"), identity, at=datetime.now(UTC) - timedelta(days=3))
    _refused(post(old), 400, "stale_timestamp")


def test_a_message_from_the_future_is_refused(post: Post, identity: SigningIdentity) -> None:
    future = notification(ses_event("Delivery"), identity, at=datetime.now(UTC) + timedelta(hours=2))
    _refused(post(future), 400, "stale_timestamp")


def test_headers_that_contradict_the_body_are_refused(post: Post, identity: SigningIdentity) -> None:
    message = notification(ses_event("Delivery"), identity)
    _refused(
        post(message, headers={**headers_for(message), "x-amz-sns-topic-arn": OTHER_TOPIC}), 400, "header_mismatch"
    )


def test_an_oversized_body_is_refused(post: Post) -> None:
    response = post(b"{" + b" " * (1024 * 1024 + 10) + b"}")
    assert response.status_code == 413
    assert not SnsNotification.objects.exists()


def test_only_post_is_allowed(client: HttpClient) -> None:
    assert client.get(URL).status_code == 405


def test_no_csrf_token_or_login_is_needed(identity: SigningIdentity, certificates: CertificateServer) -> None:
    strict = HttpClient(enforce_csrf_checks=True)
    message = notification(ses_event("Delivery"), identity)
    response = strict.post(URL, data=json.dumps(message), content_type="text/plain; charset=utf-8")
    assert response.status_code == 200


# --- replays --------------------------------------------------------------------------------------


def test_a_replayed_message_is_stored_and_queued_once(post: Post, identity: SigningIdentity) -> None:
    message = notification(ses_event("Delivery"), identity)
    assert post(message).json() == {"status": "stored"}
    assert post(message).json() == {"status": "duplicate"}
    assert post(message).status_code == 200
    assert SnsNotification.objects.count() == 1
    assert _queued() == 1


def test_a_replay_with_another_signature_version_is_still_a_duplicate(post: Post, identity: SigningIdentity) -> None:
    message = notification(ses_event("Delivery"), identity, version="1")
    post(message)
    resigned = sign({k: v for k, v in message.items() if k not in ("Signature", "SignatureVersion")}, identity, "2")
    assert post(resigned).json() == {"status": "duplicate"}
    assert SnsNotification.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_replays_are_stored_once(identity: SigningIdentity, certificates: CertificateServer) -> None:
    # given the same message arriving on eight connections at the same moment
    message = notification(ses_event("Delivery"), identity)
    body = json.dumps(message)
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    answers: list[str] = []

    def deliver() -> None:
        try:
            barrier.wait()
            response = HttpClient().post(URL, data=body, content_type="text/plain; charset=utf-8")
            answers.append(f"{response.status_code}:{response.json().get('status')}")
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(threads_count)]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then
    assert sorted(answers) == ["200:duplicate"] * (threads_count - 1) + ["200:stored"]
    assert SnsNotification.objects.filter(sns_message_id=message["MessageId"]).count() == 1
    assert _queued() == 1
