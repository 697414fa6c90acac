"""The sandbox outbox: the messages the sandbox provider kept, scoped to the tenant, and each one's
raw MIME shown as escaped text, never rendered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from django.urls import reverse

from accounts.models import SendingAccount
from deliverability.models import SandboxEvent, SandboxMessage
from tests.conftest import Tenant

OUTBOX = reverse("deliverability:outbox")
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
_ids = count()

HOSTILE_RAW = (
    b"From: News <news@alpha.example>\r\n"
    b"To: ann@alpha.example\r\n"
    b"Subject: Spring offers\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Gr=C3=BC=C3=9Fe from the bakery\r\n"
    b"--b1\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>Hello</p><script>alert('x')</script><img src=x onerror=alert(1)>\r\n"
    b"--b1--\r\n"
)


def kept(
    account: SendingAccount,
    subject: str = "Hello",
    recipients: tuple[str, ...] = ("ann@example.com",),
    events: tuple[str, ...] = ("Send", "Delivery"),
    raw: bytes = b"Subject: Hello\r\n\r\nHi\r\n",
    at: datetime = T0,
) -> SandboxMessage:
    """A message as the sandbox provider would keep it, with its events."""
    message = SandboxMessage.objects.create(
        sending_account=account,
        message_id=f"sandbox-{next(_ids)}",
        from_address="news@alpha.example",
        recipients=list(recipients),
        subject=subject,
        raw=raw,
        created_at=at,
    )
    for event in events:
        SandboxEvent.objects.create(message=message, event_type=event, payload={"eventType": event})
    return message


def _subjects(response) -> list[str]:
    return [message.subject for message in response.context["page"]]


@pytest.fixture
def outboxes(tenant: Tenant, outsider) -> None:
    kept(tenant.account_org, "Org newsletter", at=T0)
    kept(tenant.account_a, "Alpha offers", events=("Send", "Bounce"), at=T0 + timedelta(hours=1))
    kept(tenant.account_b, "Beta recall", events=("Send", "Complaint"), at=T0 + timedelta(hours=2))
    kept(SendingAccount.objects.get(organisation__memberships__user=outsider), "Someone else's", at=T0)


def test_the_organisation_sees_its_messages_newest_first(tenant: Tenant, outboxes, login) -> None:
    response = login(tenant.member).get(OUTBOX)

    assert response.status_code == 200
    assert _subjects(response) == ["Beta recall", "Alpha offers", "Org newsletter"]
    page = response.content.decode()
    assert "nothing leaves the portal" in page
    assert 'data-event="Bounce"' in page
    assert 'data-event="Complaint"' in page
    assert 'data-event="Delivery"' in page


def test_a_client_user_sees_only_its_clients_messages(tenant: Tenant, outboxes, login) -> None:
    response = login(tenant.client_user).get(OUTBOX)

    assert _subjects(response) == ["Alpha offers"]


def test_the_outbox_filters_by_account(tenant: Tenant, outboxes, login) -> None:
    response = login(tenant.owner).get(OUTBOX, {"account": tenant.account_b.pk})

    assert _subjects(response) == ["Beta recall"]


def test_filtering_by_an_account_out_of_scope_is_404(tenant: Tenant, outboxes, outsider, login) -> None:
    other = SendingAccount.objects.get(organisation__memberships__user=outsider)

    assert login(tenant.owner).get(OUTBOX, {"account": other.pk}).status_code == 404
    assert login(tenant.client_user).get(OUTBOX, {"account": tenant.account_b.pk}).status_code == 404


def test_the_outbox_is_paginated(tenant: Tenant, login) -> None:
    for i in range(30):
        kept(tenant.account_a, f"Message {i:02}", at=T0 + timedelta(minutes=i))

    http = login(tenant.owner)
    first, second = http.get(OUTBOX), http.get(OUTBOX, {"page": 2})

    assert _subjects(first)[0] == "Message 29"
    assert len(_subjects(first)) == 25
    assert len(_subjects(second)) == 5


def test_the_outbox_costs_the_same_for_many_messages(tenant: Tenant, login, django_assert_max_num_queries) -> None:
    http = login(tenant.owner)
    for i in range(2):
        kept(tenant.account_a, f"few {i}")
    with django_assert_max_num_queries(12) as few:
        assert http.get(OUTBOX).status_code == 200
    for i in range(20):
        kept(tenant.account_b if i % 2 else tenant.account_org, f"many {i}", events=("Send", "Delivery", "Open"))
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert http.get(OUTBOX).status_code == 200


def test_with_ses_and_no_sandbox_messages_there_is_no_outbox(tenant: Tenant, login, settings) -> None:
    settings.DELIVERY_PROVIDER = "ses"

    assert login(tenant.owner).get(OUTBOX).status_code == 404


def test_with_ses_the_messages_kept_earlier_stay_visible(tenant: Tenant, login, settings) -> None:
    kept(tenant.account_a, "From the sandbox days")
    settings.DELIVERY_PROVIDER = "ses"

    response = login(tenant.owner).get(OUTBOX)

    assert response.status_code == 200
    assert "now delivers through Amazon SES" in response.content.decode()


def test_an_empty_sandbox_outbox_explains_itself(tenant: Tenant, login) -> None:
    page = login(tenant.owner).get(OUTBOX).content.decode()

    assert "The outbox is empty" in page


def test_the_standing_panel_links_the_outbox_only_when_it_matters(tenant: Tenant, login, settings) -> None:
    panel = reverse("deliverability:account_standing_panel", args=[tenant.account_a.pk])
    http = login(tenant.owner)
    kept(tenant.account_a)

    assert 'data-testid="outbox-link"' in http.get(panel).content.decode()
    settings.DELIVERY_PROVIDER = "ses"
    SandboxMessage.objects.all().delete()
    assert 'data-testid="outbox-link"' not in http.get(panel).content.decode()


# --- one message --------------------------------------------------------------------------


def test_the_raw_message_is_shown_escaped_never_rendered(tenant: Tenant, login) -> None:
    message = kept(tenant.account_a, "Spring offers", raw=HOSTILE_RAW)

    response = login(tenant.owner).get(reverse("deliverability:outbox_message", args=[message.pk]))

    assert response.status_code == 200
    page = response.content.decode()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<script>alert(" not in page
    assert "<img src=x" not in page
    assert "Content-Transfer-Encoding: quoted-printable" in page
    # the text part is decoded for reading
    assert "Grüße from the bakery" in page


def test_the_message_lists_its_events(tenant: Tenant, login) -> None:
    message = kept(tenant.account_a, events=("Send", "Bounce"))

    page = login(tenant.owner).get(reverse("deliverability:outbox_message", args=[message.pk])).content.decode()

    assert 'data-event="Send"' in page
    assert 'data-event="Bounce"' in page


def test_another_tenants_message_is_404(tenant: Tenant, outboxes, outsider, login) -> None:
    theirs = SandboxMessage.objects.get(subject="Someone else's")
    beta = SandboxMessage.objects.get(subject="Beta recall")

    assert login(tenant.owner).get(reverse("deliverability:outbox_message", args=[theirs.pk])).status_code == 404
    assert login(tenant.client_user).get(reverse("deliverability:outbox_message", args=[beta.pk])).status_code == 404
    assert login(outsider).get(reverse("deliverability:outbox_message", args=[beta.pk])).status_code == 404


def test_an_outsider_sees_only_its_own_outbox(tenant: Tenant, outboxes, outsider, login) -> None:
    assert _subjects(login(outsider).get(OUTBOX)) == ["Someone else's"]


# --- admin --------------------------------------------------------------------------------


def test_the_team_reads_the_outbox_in_the_admin_without_changing_it(tenant: Tenant, staff_user, client) -> None:
    message = kept(tenant.account_a, "Spring offers", raw=HOSTILE_RAW, events=("Send", "Delivery"))
    client.force_login(staff_user)

    listing = client.get(reverse("admin:deliverability_sandboxmessage_changelist"))
    detail = client.get(reverse("admin:deliverability_sandboxmessage_change", args=[message.pk]))
    delete = client.post(reverse("admin:deliverability_sandboxmessage_delete", args=[message.pk]), {"post": "yes"})

    assert listing.status_code == 200
    assert "Spring offers" in listing.content.decode()
    assert detail.status_code == 200
    page = detail.content.decode()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<script>alert(" not in page
    assert "Delivery" in page
    assert delete.status_code == 403
    assert SandboxMessage.objects.filter(pk=message.pk).exists()
    assert client.get(reverse("admin:deliverability_sandboxmessage_add")).status_code == 403
