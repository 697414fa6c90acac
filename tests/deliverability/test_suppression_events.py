"""Provider events fill the suppression list (permanent bounces and complaints, per sending account),
and the send-time check treats transactional mail differently from promotional mail."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest

from accounts.models import SendingAccount
from deliverability import suppressions
from deliverability.models import Suppression
from deliverability.providers import ensure_setup, get_provider
from deliverability.providers.sandbox import SandboxProvider
from deliverability.signals import provider_event
from tests.conftest import Tenant

pytestmark = pytest.mark.django_db
Reason = Suppression.Reason


def _listed(account: SendingAccount) -> dict[str, str]:
    return dict(Suppression.objects.filter(sending_account=account).values_list("email", "reason"))


# --- through the sandbox provider (the same signal as the SNS webhook's job) ---------------------------


@pytest.fixture
def send_sandbox(tenant: Tenant, settings: Any, django_capture_on_commit_callbacks: Any) -> Any:
    settings.DELIVERY_PROVIDER = "sandbox"
    setup = ensure_setup(tenant.account_a)
    provider = get_provider("sandbox")
    assert isinstance(provider, SandboxProvider)

    def _send(*recipients: str) -> None:
        msg = EmailMessage()
        msg["From"] = "news@alpha.example"
        msg["To"] = ", ".join(recipients)
        msg["Subject"] = "Hello"
        msg.set_content("Hi")
        with django_capture_on_commit_callbacks(execute=True):
            provider.send_raw(
                setup,
                msg.as_bytes(),
                from_address="news@alpha.example",
                recipients=list(recipients),
                tags={"xes_account": str(tenant.account_a.pk)},
            )

    return _send


def test_simulator_bounces_and_complaints_are_suppressed_like_ses_would(tenant: Tenant, send_sandbox: Any) -> None:
    send_sandbox(
        "bounce@simulator.amazonses.com",
        "complaint@simulator.amazonses.com",
        "suppressionlist@simulator.amazonses.com",
        "success@simulator.amazonses.com",
        "ooto@simulator.amazonses.com",
        "reader@example.net",
    )
    assert _listed(tenant.account_a) == {
        "bounce@simulator.amazonses.com": Reason.HARD_BOUNCE,
        "complaint@simulator.amazonses.com": Reason.COMPLAINT,
        "suppressionlist@simulator.amazonses.com": Reason.HARD_BOUNCE,
    }
    assert _listed(tenant.account_b) == {}


def test_the_next_bounce_of_a_listed_address_changes_nothing(tenant: Tenant, send_sandbox: Any) -> None:
    send_sandbox("bounce@simulator.amazonses.com")
    entry = Suppression.objects.get()
    send_sandbox("bounce@simulator.amazonses.com")
    assert list(Suppression.objects.values_list("pk", "reason")) == [(entry.pk, Reason.HARD_BOUNCE)]


def test_the_note_says_where_the_entry_came_from(tenant: Tenant, send_sandbox: Any) -> None:
    send_sandbox("bounce@simulator.amazonses.com")
    note = Suppression.objects.get().note
    assert note.startswith("bounce (General) message sandbox-")


# --- the receiver with hand-made events --------------------------------------------------------------


def _event(kind: str, account: SendingAccount | None = None, **details: Any) -> dict[str, Any]:
    mail = {"messageId": "0102-abc", "tags": {"xes_account": [str(account.pk)]} if account else {}}
    return {"eventType": kind, "mail": mail, **details}


def _announce(event: dict[str, Any], account_id: int | None) -> None:
    provider_event.send(sender=object, event=event, sending_account_id=account_id)


def test_a_permanent_bounce_lists_every_bounced_recipient(tenant: Tenant) -> None:
    bounce = {
        "bounceType": "Permanent",
        "bounceSubType": "NoEmail",
        "bouncedRecipients": [{"emailAddress": "a@example.net"}, {"emailAddress": "Bob <b@EXAMPLE.net>"}],
    }
    _announce(_event("Bounce", tenant.account_a, bounce=bounce), tenant.account_a.pk)
    assert _listed(tenant.account_a) == {"a@example.net": Reason.HARD_BOUNCE, "b@example.net": Reason.HARD_BOUNCE}


@pytest.mark.parametrize("bounce_type", ["Transient", "Undetermined", None])
def test_other_bounces_list_nobody(tenant: Tenant, bounce_type: str | None) -> None:
    bounce = {"bounceType": bounce_type, "bouncedRecipients": [{"emailAddress": "a@example.net"}]}
    _announce(_event("Bounce", tenant.account_a, bounce=bounce), tenant.account_a.pk)
    assert _listed(tenant.account_a) == {}


def test_a_complaint_outranks_an_unsubscribe(tenant: Tenant) -> None:
    suppressions.suppress(tenant.account_a, "a@example.net", Reason.UNSUBSCRIBE)
    complaint = {"complainedRecipients": [{"emailAddress": "a@example.net"}], "complaintFeedbackType": "abuse"}
    _announce(_event("Complaint", tenant.account_a, complaint=complaint), tenant.account_a.pk)
    assert _listed(tenant.account_a) == {"a@example.net": Reason.COMPLAINT}


def test_a_not_spam_report_is_no_complaint(tenant: Tenant) -> None:
    complaint = {"complainedRecipients": [{"emailAddress": "a@example.net"}], "complaintFeedbackType": "not-spam"}
    _announce(_event("Complaint", tenant.account_a, complaint=complaint), tenant.account_a.pk)
    assert _listed(tenant.account_a) == {}


@pytest.mark.parametrize("kind", ["Delivery", "Send", "Reject", "DeliveryDelay", "Open", "Click", "Subscription"])
def test_other_events_list_nobody(tenant: Tenant, kind: str) -> None:
    details = {"bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "a@example.net"}]}}
    _announce(_event(kind, tenant.account_a, **details), tenant.account_a.pk)
    assert _listed(tenant.account_a) == {}


@pytest.mark.parametrize(
    "recipients",
    [None, "a@example.net", [None, 7, {"emailAddress": 7}, {"emailAddress": "not an address"}], [{}]],
)
def test_malformed_recipients_are_skipped_without_error(tenant: Tenant, recipients: Any) -> None:
    bounce = {"bounceType": "Permanent", "bouncedRecipients": recipients}
    _announce(_event("Bounce", tenant.account_a, bounce=bounce), tenant.account_a.pk)
    assert _listed(tenant.account_a) == {}


def test_an_event_without_an_account_lists_nobody(tenant: Tenant) -> None:
    bounce = {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "a@example.net"}]}
    _announce(_event("Bounce", bounce=bounce), None)
    _announce(_event("Bounce", bounce=bounce), 987654321)
    assert not Suppression.objects.exists()


# --- promotional and transactional mail at send time ------------------------------------------------


@pytest.fixture
def listed(tenant: Tenant) -> SendingAccount:
    account = tenant.account_a
    suppressions.suppress(account, "bounced@example.net", Reason.HARD_BOUNCE)
    suppressions.suppress(account, "complained@example.net", Reason.COMPLAINT)
    suppressions.suppress(account, "Left@example.net", Reason.UNSUBSCRIBE)
    suppressions.suppress(account, "manual@example.net", Reason.MANUAL)
    return account


ADDRESSES = [
    "bounced@example.net",
    "complained@example.net",
    "left@EXAMPLE.net",
    "manual@example.net",
    "fine@example.net",
]


def test_promotional_mail_skips_every_suppression(listed: SendingAccount) -> None:
    assert suppressions.suppressed_set(listed, ADDRESSES) == set(ADDRESSES) - {"fine@example.net"}
    assert suppressions.suppressed_set(listed, ADDRESSES, transactional=False) == set(ADDRESSES) - {"fine@example.net"}


def test_transactional_mail_ignores_unsubscribes_but_never_bounces_or_complaints(listed: SendingAccount) -> None:
    assert suppressions.suppressed_set(listed, ADDRESSES, transactional=True) == {
        "bounced@example.net",
        "complained@example.net",
        "manual@example.net",
    }
    assert suppressions.is_suppressed(listed, "left@example.net") is True
    assert suppressions.is_suppressed(listed, "left@example.net", transactional=True) is False


def test_the_transactional_check_is_one_query(listed: SendingAccount, django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(1):
        suppressions.suppressed_set(listed, ADDRESSES, transactional=True)


def test_reasons_for_a_mixed_batch_in_one_query(listed: SendingAccount, django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(1):
        reasons = suppressions.suppression_reasons(listed, ADDRESSES)
    assert reasons == {
        "bounced@example.net": Reason.HARD_BOUNCE,
        "complained@example.net": Reason.COMPLAINT,
        "left@EXAMPLE.net": Reason.UNSUBSCRIBE,
        "manual@example.net": Reason.MANUAL,
    }
    blocked_for_receipts = {
        email for email, reason in reasons.items() if suppressions.blocks(reason, transactional=True)
    }
    assert "left@EXAMPLE.net" not in blocked_for_receipts


def test_blocking_reasons_for_queries_in_sql() -> None:
    assert suppressions.blocking_reasons() == set(Reason.values)
    assert suppressions.blocking_reasons(transactional=True) == {Reason.HARD_BOUNCE, Reason.COMPLAINT, Reason.MANUAL}


def test_the_checks_are_per_account(listed: SendingAccount, tenant: Tenant) -> None:
    assert suppressions.suppressed_set(tenant.account_b, ADDRESSES) == set()
