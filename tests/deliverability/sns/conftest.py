"""Fixtures of the SNS webhook tests: the test CA and signing certificates, the certificate "server"
(the one network call, :func:`deliverability.webhooks.sns.fetch_certificate_pem`, answered with the
test certificate's PEM), the allowed topics, posting, and running the queued jobs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import django_rq
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import Client as HttpClient
from rq import SimpleWorker

from deliverability.signals import provider_event
from deliverability.webhooks import sns
from tests.deliverability.sns.signing import CERT_URL, OTHER_TOPIC, TOPIC, SigningIdentity, headers_for, issue, make_ca

URL = "/webhooks/ses/"


@pytest.fixture(scope="session")
def ca() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    return make_ca()


@pytest.fixture(scope="session")
def identity(ca: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> SigningIdentity:
    """The signing certificate served at ``CERT_URL``."""
    return issue(ca)


@pytest.fixture(scope="session")
def impostor(ca: tuple[rsa.RSAPrivateKey, x509.Certificate]) -> SigningIdentity:
    """Another key and certificate of the same CA: its signatures do not match ``CERT_URL``'s certificate."""
    return issue(ca)


@dataclass
class CertificateServer:
    """What the network would answer for certificate URLs; records every fetch."""

    pems: dict[str, bytes]
    calls: list[str] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)  # raised by the next fetches, in order

    def fetch(self, url: str) -> bytes:
        self.calls.append(url)
        if self.failures:
            raise self.failures.pop(0)
        if url not in self.pems:
            raise sns.Rejected("certificate_not_found", detail="HTTP 404")
        return self.pems[url]


@pytest.fixture
def certificates(monkeypatch: pytest.MonkeyPatch, identity: SigningIdentity) -> CertificateServer:
    server = CertificateServer(pems={CERT_URL: identity.pem})
    monkeypatch.setattr(sns, "fetch_certificate_pem", server.fetch)
    return server


@pytest.fixture(autouse=True)
def _topics(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Our topics; fake AWS credentials (never a developer's real account)."""
    settings.SES_EVENT_TOPIC_ARN = TOPIC
    settings.SNS_TOPIC_ARNS = [OTHER_TOPIC]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


Post = Callable[..., Any]


@pytest.fixture
def post(client: HttpClient, certificates: CertificateServer, django_capture_on_commit_callbacks: Any) -> Post:
    """POST a message as SNS does (text/plain JSON, x-amz-sns headers); on-commit callbacks run."""

    def _post(message: dict[str, Any] | str | bytes, *, headers: dict[str, str] | None = None) -> Any:
        if isinstance(message, dict):
            body: str | bytes = json.dumps(message)
            sent_headers = headers_for(message) if headers is None else headers
        else:
            body, sent_headers = message, headers or {}
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(URL, data=body, content_type="text/plain; charset=utf-8", headers=sent_headers)

    return _post


@pytest.fixture
def run_jobs() -> Callable[[], int]:
    """Run what is queued on "default" in this process (real Redis); returns how many jobs ran."""

    def _run() -> int:
        queue = django_rq.get_queue("default")
        count = queue.count
        SimpleWorker([queue], connection=queue.connection).work(burst=True)
        return count

    return _run


@pytest.fixture
def announced() -> Iterator[list[dict[str, Any]]]:
    """What :data:`provider_event` carried, in order."""
    received: list[dict[str, Any]] = []

    def receiver(sender: object, event: dict[str, Any], sending_account_id: int | None, **kwargs: Any) -> None:
        received.append({"sender": sender, "event": event, "sending_account_id": sending_account_id})

    provider_event.connect(receiver, weak=False, dispatch_uid="tests.announced")
    yield received
    provider_event.disconnect(dispatch_uid="tests.announced")
