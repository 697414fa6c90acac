"""The SNS checks on their own: certificate URL, certificate fetch and cache, canonical string,
signatures v1 and v2, topics. The one network call is served by a real local HTTP server where its
own behaviour is under test (redirects, sizes, timeouts), and by the test certificate otherwise."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from deliverability.webhooks import sns
from tests.deliverability.sns.conftest import CertificateServer
from tests.deliverability.sns.signing import (
    CERT_URL,
    OTHER_TOPIC,
    TOPIC,
    SigningIdentity,
    confirmation,
    issue,
    notification,
    ses_event,
    string_to_sign,
)

NOW = datetime.now(UTC)


# --- certificate URL ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        CERT_URL,
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-7506a1e35b36ef5a444dd1a8e7cc3ed8.pem",
        "https://sns.ap-southeast-2.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
    ],
)
def test_sns_certificate_urls_are_accepted(url: str) -> None:
    sns.check_certificate_url(url)


BAD_CERT_URLS = [
    "http://sns.eu-central-1.amazonaws.com/SimpleNotificationService-abc.pem",  # not https
    "https://sns.eu-central-1.amazonaws.com.evil.com/SimpleNotificationService-abc.pem",  # look-alike suffix
    "https://sns.eu-central-1.amazonaws.com.cn.evil.com/x.pem",
    "https://evil.com/sns.eu-central-1.amazonaws.com/x.pem",  # SNS host in the path
    "https://sns.eu-central-1.amazonaws.com@evil.com/x.pem",  # user info: the host is evil.com
    "https://evil.com@sns.eu-central-1.amazonaws.com/x.pem",  # user info before the real host
    "https://evil.com\\@sns.eu-central-1.amazonaws.com/x.pem",
    "https://sns.eu-central-1.amazonaws.com:8443/x.pem",  # another port
    "https://sns.eu-central-1.amazonaws.com:443/x.pem",  # SNS never names a port
    "https://sns.eu-central-1.amazonaws.com/x.pem?a=b",  # query
    "https://sns.eu-central-1.amazonaws.com/x.pem#frag",
    "https://sns.eu-central-1.amazonaws.com/x.txt",  # not a .pem
    "https://sns.eu-central-1.amazonaws.com/../x.pem",
    "https://sns.eu-central-1.amazonaws.com//evil.com/x.pem",
    "https://sns.amazonaws.com/x.pem",  # no region
    "https://sqs.eu-central-1.amazonaws.com/x.pem",  # another service
    "https://snsxeu-central-1.amazonaws.com/x.pem",  # a dot is a dot, not any character
    "https://sns.eu-central-1xamazonaws.com/x.pem",
    "https://sns.eu-central-1.amazonaws.com\u3002evil.com/x.pem",  # ideographic full stop
    "https://sns.eu-central-1.amazonaws.com/x.pem\n",
    "https://SNS.eu-central-1.amazonaws.com/x.pem\nhttps://evil.com/x.pem",
    "https://127.0.0.1/x.pem",
    "https://[::1]/x.pem",
    "file:///etc/passwd.pem",
    "",
]


@pytest.mark.parametrize("url", BAD_CERT_URLS)
def test_other_certificate_urls_are_refused_before_any_fetch(url: str, certificates: CertificateServer) -> None:
    with pytest.raises(sns.Rejected) as refused:
        sns.signing_certificate(url, NOW)
    assert refused.value.code == "bad_certificate_url"
    assert certificates.calls == []


# --- fetching and caching certificates -----------------------------------------------------------


@pytest.mark.django_db
def test_a_good_certificate_is_fetched_once_and_cached(certificates: CertificateServer) -> None:
    first = sns.signing_certificate(CERT_URL, NOW)
    second = sns.signing_certificate(CERT_URL, NOW)
    assert first == second
    assert certificates.calls == [CERT_URL]


@pytest.mark.django_db
def test_a_failed_fetch_is_never_cached(certificates: CertificateServer) -> None:
    certificates.failures.append(sns.CertificateUnavailable("timed out"))
    with pytest.raises(sns.CertificateUnavailable):
        sns.signing_certificate(CERT_URL, NOW)
    sns.signing_certificate(CERT_URL, NOW)
    sns.signing_certificate(CERT_URL, NOW)
    assert certificates.calls == [CERT_URL, CERT_URL]  # fetched again after the failure, then cached


@pytest.mark.django_db
def test_a_refused_fetch_is_never_cached(certificates: CertificateServer) -> None:
    url = CERT_URL.replace("0123", "9999")
    for _ in range(2):
        with pytest.raises(sns.Rejected):
            sns.signing_certificate(url, NOW)
    assert certificates.calls == [url, url]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [(NOW - timedelta(days=90), NOW - timedelta(minutes=1)), (NOW + timedelta(hours=1), NOW + timedelta(days=90))],
    ids=["expired", "not-yet-valid"],
)
def test_a_certificate_outside_its_validity_is_refused_and_not_cached(
    ca: Any, certificates: CertificateServer, not_before: datetime, not_after: datetime
) -> None:
    certificates.pems[CERT_URL] = issue(ca, not_before=not_before, not_after=not_after).pem
    for _ in range(2):
        with pytest.raises(sns.Rejected) as refused:
            sns.signing_certificate(CERT_URL, NOW)
        assert refused.value.code == "certificate_expired"
    assert len(certificates.calls) == 2


@pytest.mark.django_db
def test_a_cached_certificate_that_expired_meanwhile_is_refused(certificates: CertificateServer) -> None:
    certificate = sns.signing_certificate(CERT_URL, NOW)
    with pytest.raises(sns.Rejected):
        sns.signing_certificate(CERT_URL, certificate.not_valid_after_utc + timedelta(seconds=1))


@pytest.mark.django_db
def test_what_is_not_an_rsa_certificate_is_refused(certificates: CertificateServer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    ec_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    for pem in (ec_cert.public_bytes(serialization.Encoding.PEM), b"not a certificate"):
        certificates.pems[CERT_URL] = pem
        with pytest.raises(sns.Rejected) as refused:
            sns.signing_certificate(CERT_URL, NOW)
        assert refused.value.code == "bad_certificate"


# --- the network call itself, against a real local server ------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes, float]] = {}
    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        status, headers, body, delay = self.routes.get(self.path, (404, {}, b"", 0.0))
        if delay:
            time.sleep(delay)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def local_server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"routes": {}, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_the_fetch_returns_the_certificate(local_server: Any, identity: SigningIdentity) -> None:
    base, handler = local_server
    handler.routes["/cert.pem"] = (200, {}, identity.pem, 0.0)
    assert sns.fetch_certificate_pem(f"{base}/cert.pem") == identity.pem


def test_the_fetch_follows_no_redirect(local_server: Any) -> None:
    base, handler = local_server
    handler.routes["/cert.pem"] = (302, {"Location": f"{base}/internal"}, b"", 0.0)
    with pytest.raises(sns.Rejected):
        sns.fetch_certificate_pem(f"{base}/cert.pem")
    assert handler.seen == ["/cert.pem"]


@pytest.mark.parametrize(
    ("status", "error"), [(404, sns.Rejected), (403, sns.Rejected), (503, sns.CertificateUnavailable)]
)
def test_the_fetch_tells_refusals_from_outages(local_server: Any, status: int, error: type[Exception]) -> None:
    base, handler = local_server
    handler.routes["/cert.pem"] = (status, {}, b"nope", 0.0)
    with pytest.raises(error):
        sns.fetch_certificate_pem(f"{base}/cert.pem")


def test_the_fetch_refuses_an_oversized_answer(local_server: Any) -> None:
    base, handler = local_server
    handler.routes["/cert.pem"] = (200, {}, b"x" * (sns.MAX_CERT_BYTES + 10), 0.0)
    with pytest.raises(sns.Rejected):
        sns.fetch_certificate_pem(f"{base}/cert.pem")


def test_the_fetch_gives_up_quickly(local_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    base, handler = local_server
    handler.routes["/cert.pem"] = (200, {}, b"late", 2.0)
    monkeypatch.setattr(sns, "CERT_FETCH_TIMEOUT", sns.urllib3.Timeout(connect=0.5, read=0.3))
    started = time.monotonic()
    with pytest.raises(sns.CertificateUnavailable):
        sns.fetch_certificate_pem(f"{base}/cert.pem")
    assert time.monotonic() - started < 1.5


def test_an_unreachable_certificate_host_is_an_outage() -> None:
    with pytest.raises(sns.CertificateUnavailable):
        sns.fetch_certificate_pem("http://127.0.0.1:9/cert.pem")  # discard port: connection refused


# --- canonical string and signatures ---------------------------------------------------------------


@pytest.mark.parametrize("subject", [None, "Amazon SES Email Event Notification"])
def test_the_canonical_string_of_a_notification(identity: SigningIdentity, subject: str | None) -> None:
    message = notification(ses_event("Delivery"), identity, subject=subject)
    fields = sns.parse_body(json.dumps(message).encode())
    assert sns.canonical_string(fields) == string_to_sign(message)
    assert (b"Subject\n" in sns.canonical_string(fields)) is (subject is not None)


def test_the_canonical_string_of_a_subscription_confirmation(identity: SigningIdentity) -> None:
    message = confirmation(identity)
    fields = sns.parse_body(json.dumps(message).encode())
    assert sns.canonical_string(fields).startswith(b"Message\n")
    assert sns.canonical_string(fields) == string_to_sign(message)
    assert b"SubscribeURL\n" in sns.canonical_string(fields)
    assert b"Token\n" in sns.canonical_string(fields)


def _certificate(identity: SigningIdentity) -> x509.Certificate:
    return x509.load_pem_x509_certificate(identity.pem)


@pytest.mark.parametrize("version", ["1", "2"])
def test_signatures_of_both_versions_verify(identity: SigningIdentity, version: str) -> None:
    message = notification(ses_event("Delivery"), identity, version=version)
    sns.check_signature(message, _certificate(identity))


def test_a_version_1_signature_does_not_pass_as_version_2(identity: SigningIdentity) -> None:
    message = {**notification(ses_event("Delivery"), identity, version="1"), "SignatureVersion": "2"}
    with pytest.raises(sns.Rejected):
        sns.check_signature(message, _certificate(identity))


def test_a_signature_by_another_key_fails(identity: SigningIdentity, impostor: SigningIdentity) -> None:
    message = notification(ses_event("Delivery"), impostor)
    with pytest.raises(sns.Rejected) as refused:
        sns.check_signature(message, _certificate(identity))
    assert refused.value.code == "invalid_signature"


@pytest.mark.parametrize("version", ["3", "0", ""])
def test_unknown_signature_versions_are_refused(identity: SigningIdentity, version: str) -> None:
    message = {**notification(ses_event("Delivery"), identity), "SignatureVersion": version}
    with pytest.raises(sns.Rejected):
        sns.check_signature(message, _certificate(identity))


def test_a_signature_that_is_not_base64_is_refused(identity: SigningIdentity) -> None:
    message = {**notification(ses_event("Delivery"), identity), "Signature": "not base64!"}
    with pytest.raises(sns.Rejected):
        sns.check_signature(message, _certificate(identity))


# --- topics ---------------------------------------------------------------------------------------


def test_allowed_topics_come_from_both_settings(settings: Any) -> None:
    settings.SES_EVENT_TOPIC_ARN = TOPIC
    settings.SNS_TOPIC_ARNS = f" {OTHER_TOPIC} , ,arn:aws:sns:us-east-1:123456789012:third"
    assert sns.allowed_topics() == {TOPIC, OTHER_TOPIC, "arn:aws:sns:us-east-1:123456789012:third"}


def test_without_settings_no_topic_is_allowed(settings: Any) -> None:
    settings.SES_EVENT_TOPIC_ARN = ""
    settings.SNS_TOPIC_ARNS = []
    assert sns.allowed_topics() == frozenset()


def test_the_region_of_a_topic() -> None:
    assert sns.topic_region(TOPIC) == "eu-central-1"
    assert sns.topic_region("not an arn") == ""
