"""The sandbox provider: messages are kept for the outbox, the events SES would publish (including the
mailbox simulator's) are stored in SES's JSON format and announced after commit, quotas are generous
but real, and Easy DKIM tokens are stable per domain."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
import time_machine

from accounts.models import SendingAccount
from deliverability.models import ProviderSetup, SandboxEvent, SandboxMessage
from deliverability.providers import MessageRejected, SendingPaused, ensure_setup, get_provider
from deliverability.providers.sandbox import SandboxProvider, easy_dkim_tokens
from deliverability.signals import provider_event
from tests.conftest import Tenant

NOW = datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=UTC)
SES_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

pytestmark = pytest.mark.django_db


def raw_message(subject: str = "Spring offers", to: str = "reader@example.net") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alpha Bakery <news@alpha.example>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = "Mon, 02 Mar 2026 09:30:00 +0000"
    msg.set_content("Fresh bread!")
    return msg.as_bytes()


@pytest.fixture(autouse=True)
def _sandbox(settings: Any) -> None:
    settings.DELIVERY_PROVIDER = "sandbox"
    settings.SES_NAME_PREFIX = "xes"


@pytest.fixture
def setup(tenant: Tenant) -> ProviderSetup:
    return ensure_setup(tenant.account_a)


@pytest.fixture
def provider() -> SandboxProvider:
    provider = get_provider("sandbox")
    assert isinstance(provider, SandboxProvider)
    return provider


@pytest.fixture
def announced() -> Iterator[list[dict[str, Any]]]:
    """What the ``provider_event`` signal carried, in order."""
    received: list[dict[str, Any]] = []

    def receiver(sender: object, event: dict[str, Any], sending_account_id: int, **kwargs: Any) -> None:
        received.append({"sender": sender, "event": event, "sending_account_id": sending_account_id})

    provider_event.connect(receiver, weak=False)
    yield received
    provider_event.disconnect(receiver)


Send = Callable[..., SandboxMessage]


@pytest.fixture
def send(provider: SandboxProvider, setup: ProviderSetup, django_capture_on_commit_callbacks: Any) -> Send:
    """Send through the sandbox (on-commit callbacks run, as after a real commit); returns the stored message."""

    def _send(*recipients: str, tags: dict[str, str] | None = None, raw: bytes | None = None) -> SandboxMessage:
        with django_capture_on_commit_callbacks(execute=True):
            message_id = provider.send_raw(
                setup,
                raw or raw_message(),
                from_address="news@alpha.example",
                recipients=list(recipients),
                tags=tags or {},
            )
        return SandboxMessage.objects.get(message_id=message_id)

    return _send


def event_types(message: SandboxMessage) -> list[str]:
    return [event.event_type for event in message.events.all()]


def test_message_is_kept_for_the_outbox(send: Send, setup: ProviderSetup, tenant: Tenant) -> None:
    # given
    raw = raw_message("Grüße aus der Backstube")  # non-ASCII: RFC 2047 encoded in the raw message
    # when
    message = send("reader@example.net", tags={"campaign": "12"}, raw=raw)
    # then
    assert re.fullmatch(r"sandbox-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", message.message_id)
    assert message.sending_account == tenant.account_a
    assert message.configuration_set == setup.configuration_set == f"xes-acct-{tenant.account_a.pk}"
    assert message.from_address == "news@alpha.example"
    assert message.recipients == ["reader@example.net"]
    assert message.subject == "Grüße aus der Backstube"
    assert bytes(message.raw) == raw
    assert message.tags == {"campaign": "12"}


def test_ordinary_recipient_gets_send_and_delivery(send: Send) -> None:
    message = send("reader@example.net")
    assert event_types(message) == ["Send", "Delivery"]
    delivery = message.events.get(event_type="Delivery").payload
    assert delivery["delivery"]["recipients"] == ["reader@example.net"]
    assert delivery["delivery"]["smtpResponse"].startswith("250 ")


def test_payloads_have_the_ses_mail_object_with_destination_and_tags(send: Send, setup: ProviderSetup) -> None:
    # when: tags that SES would refuse are sanitised first
    with time_machine.travel(NOW, tick=False):
        message = send("reader@example.net", "second@example.net", tags={"campaign": "12", "message id": "m 42"})
    # then
    for event in message.events.all():
        payload = event.payload
        assert payload["eventType"] == event.event_type
        mail = payload["mail"]
        assert mail["messageId"] == message.message_id
        assert mail["source"] == "news@alpha.example"
        assert mail["destination"] == ["reader@example.net", "second@example.net"]
        assert mail["timestamp"] == "2026-03-02T09:30:15.123Z"
        assert mail["tags"]["campaign"] == ["12"]
        assert mail["tags"]["message_id"] == ["m_42"]
        assert mail["tags"]["ses:configuration-set"] == [setup.configuration_set]
        assert mail["tags"]["ses:from-domain"] == ["alpha.example"]
        assert mail["commonHeaders"]["subject"] == "Spring offers"
        assert mail["commonHeaders"]["from"] == ["Alpha Bakery <news@alpha.example>"]
        assert {"name": "Subject", "value": "Spring offers"} in mail["headers"]
        assert json.loads(json.dumps(payload)) == payload  # plain JSON, as SNS would deliver it
    assert event_types(message) == ["Send", "Delivery", "Delivery"]
    assert message.tags == {"campaign": "12", "message_id": "m_42"}


def test_bounce_simulator_bounces_permanently(send: Send) -> None:
    message = send("bounce@simulator.amazonses.com")
    assert event_types(message) == ["Send", "Bounce"]
    bounce = message.events.get(event_type="Bounce").payload["bounce"]
    assert bounce["bounceType"] == "Permanent"
    assert bounce["bounceSubType"] == "General"
    [recipient] = bounce["bouncedRecipients"]
    assert recipient["emailAddress"] == "bounce@simulator.amazonses.com"
    assert recipient["status"].startswith("5.")
    assert SES_TIMESTAMP.match(bounce["timestamp"])
    assert bounce["feedbackId"]


def test_complaint_simulator_delivers_then_complains(send: Send) -> None:
    message = send("complaint@simulator.amazonses.com")
    assert event_types(message) == ["Send", "Delivery", "Complaint"]
    complaint = message.events.get(event_type="Complaint").payload["complaint"]
    assert complaint["complainedRecipients"] == [{"emailAddress": "complaint@simulator.amazonses.com"}]
    assert complaint["complaintFeedbackType"] == "abuse"
    assert SES_TIMESTAMP.match(complaint["timestamp"])


def test_suppression_list_simulator_bounces_as_suppressed(send: Send) -> None:
    message = send("suppressionlist@simulator.amazonses.com")
    assert event_types(message) == ["Send", "Bounce"]
    bounce = message.events.get(event_type="Bounce").payload["bounce"]
    assert bounce["bounceType"] == "Permanent"
    assert bounce["bounceSubType"] == "OnAccountSuppressionList"
    assert bounce["bouncedRecipients"][0]["emailAddress"] == "suppressionlist@simulator.amazonses.com"


@pytest.mark.parametrize("address", ["ooto@simulator.amazonses.com", "success@simulator.amazonses.com"])
def test_out_of_office_and_success_simulators_are_delivered(send: Send, address: str) -> None:
    message = send(address)
    assert event_types(message) == ["Send", "Delivery"]
    assert message.events.get(event_type="Delivery").payload["delivery"]["recipients"] == [address]


def test_simulator_addresses_with_a_label_and_in_capitals_behave_the_same(send: Send) -> None:
    message = send("bounce+campaign-12@simulator.amazonses.com", "Complaint@Simulator.AmazonSES.com")
    assert event_types(message) == ["Send", "Bounce", "Delivery", "Complaint"]


def test_bounce_at_another_domain_is_an_ordinary_recipient(send: Send) -> None:
    assert event_types(send("bounce@example.net")) == ["Send", "Delivery"]


def test_each_recipient_gets_its_own_events(send: Send) -> None:
    message = send("reader@example.net", "bounce@simulator.amazonses.com")
    events = list(message.events.all())
    assert [e.event_type for e in events] == ["Send", "Delivery", "Bounce"]
    assert events[1].payload["delivery"]["recipients"] == ["reader@example.net"]
    assert events[2].payload["bounce"]["bouncedRecipients"][0]["emailAddress"] == "bounce@simulator.amazonses.com"


def test_events_are_announced_only_after_commit(
    provider: SandboxProvider,
    setup: ProviderSetup,
    tenant: Tenant,
    announced: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    # when: sent, transaction not committed yet
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        message_id = provider.send_raw(
            setup,
            raw_message(),
            from_address="news@alpha.example",
            recipients=["complaint@simulator.amazonses.com"],
            tags={},
        )
    # then: nothing announced yet; the stored events are
    assert announced == []
    assert SandboxEvent.objects.filter(message__message_id=message_id).count() == 3
    # when: committed
    for callback in callbacks:
        callback()
    # then: every event, in order, with the sending account
    assert [a["event"]["eventType"] for a in announced] == ["Send", "Delivery", "Complaint"]
    assert {a["sending_account_id"] for a in announced} == {tenant.account_a.pk}
    assert {a["event"]["mail"]["messageId"] for a in announced} == {message_id}
    stored = [e.payload for e in SandboxEvent.objects.filter(message__message_id=message_id)]
    assert [a["event"] for a in announced] == stored


def test_a_failing_receiver_does_not_break_sending(send: Send) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("event processing is broken")

    provider_event.connect(broken, weak=False)
    try:
        message = send("reader@example.net")
    finally:
        provider_event.disconnect(broken)
    assert event_types(message) == ["Send", "Delivery"]


def test_message_without_recipients_is_rejected(provider: SandboxProvider, setup: ProviderSetup) -> None:
    with pytest.raises(MessageRejected) as caught:
        provider.send_raw(setup, raw_message(), from_address="news@alpha.example", recipients=[], tags={})
    assert caught.value.user_message == "The message has no recipients."
    assert not SandboxMessage.objects.exists()


def test_quota_is_generous_and_counts_recipients_of_the_last_24_hours(send: Send, provider: SandboxProvider) -> None:
    # given: 2 recipients 25 hours ago, 3 one hour ago
    with time_machine.travel(NOW - timedelta(hours=25), tick=False):
        send("a@example.net", "b@example.net")
    with time_machine.travel(NOW - timedelta(hours=1), tick=False):
        send("c@example.net", "d@example.net", "e@example.net")
    # when
    with time_machine.travel(NOW, tick=False):
        quota = provider.quota()
    # then
    assert quota.max_24_hour_send == 50_000
    assert quota.max_send_rate == 14.0
    assert quota.sent_last_24_hours == 3
    assert quota.sending_enabled is True


def test_quota_follows_the_settings(provider: SandboxProvider, settings: Any) -> None:
    settings.SANDBOX_MAX_24_HOUR_SEND = 200
    settings.SANDBOX_MAX_SEND_RATE = 2.5
    quota = provider.quota()
    assert (quota.max_24_hour_send, quota.max_send_rate) == (200, 2.5)


def test_used_up_daily_quota_pauses_sending(send: Send, settings: Any) -> None:
    settings.SANDBOX_MAX_24_HOUR_SEND = 2
    send("a@example.net")
    with pytest.raises(SendingPaused) as caught:
        send("b@example.net", "c@example.net")
    assert caught.value.code == "LimitExceededException"
    assert caught.value.retryable is True
    send("b@example.net")  # exactly up to the quota is fine
    assert SandboxMessage.objects.count() == 2


def test_disabled_sending_pauses_sending(send: Send, settings: Any) -> None:
    settings.SANDBOX_SENDING_ENABLED = False
    with pytest.raises(SendingPaused):
        send("a@example.net")
    assert not SandboxMessage.objects.exists()


def test_easy_dkim_tokens_are_stable_per_domain_and_look_like_ses_tokens(
    provider: SandboxProvider, setup: ProviderSetup
) -> None:
    first = provider.create_domain_identity(setup, "alpha.example")
    again = provider.create_domain_identity(setup, "alpha.example")
    other = provider.create_domain_identity(setup, "beta.example")
    assert first == again
    assert first.tokens == easy_dkim_tokens("alpha.example")
    assert len(set(first.tokens)) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", token) for token in first.tokens)
    assert not set(first.tokens) & set(other.tokens)


def test_easy_dkim_tokens_depend_on_the_secret_key(settings: Any) -> None:
    before = easy_dkim_tokens("alpha.example")
    settings.SECRET_KEY = "another secret key for another installation"
    assert easy_dkim_tokens("alpha.example") != before


def test_own_dkim_key_needs_no_tokens(provider: SandboxProvider, setup: ProviderSetup) -> None:
    dkim = provider.create_domain_identity(setup, "alpha.example", byo_dkim=("xes2026", "-----BEGIN ..."))
    assert dkim.tokens == []


def test_everything_else_is_accepted_without_leaving_the_machine(
    provider: SandboxProvider, setup: ProviderSetup
) -> None:
    provider.ensure_account(setup)
    provider.set_mail_from(setup, "alpha.example", "bounce.alpha.example")
    provider.ensure_ip_pool("xes-acct-1")
    provider.assign_dedicated_ip("xes-acct-1", "198.51.100.7")
    provider.use_ip_pool(setup, "xes-acct-1")
    provider.delete_domain_identity(setup, "alpha.example")
    state = provider.identity_state("alpha.example")
    assert state.exists
    assert state.verified_for_sending
    assert provider.mail_from_mx().startswith("feedback-smtp.")
    assert provider.dkim_cname("alpha.example", "abc") == ("abc._domainkey.alpha.example", "abc.dkim.amazonses.com")


def test_sandbox_message_belongs_to_the_sending_account_of_the_setup(send: Send, tenant: Tenant) -> None:
    message = send("reader@example.net")
    assert SendingAccount.objects.get(pk=message.sending_account_id) == tenant.account_a
    assert not SandboxMessage.objects.filter(sending_account=tenant.account_b).exists()
