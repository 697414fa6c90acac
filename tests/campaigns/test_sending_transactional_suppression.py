"""Transactional mail ignores unsubscribes, never hard bounces, complaints or manual entries: when
queueing a campaign, when queueing a triggered message, and when the worker re-checks at send time."""

from __future__ import annotations

from campaigns.models import Message
from campaigns.sending import queue_campaign, queue_triggered
from campaigns.sending.providers import RecordingProvider
from deliverability.models import Suppression
from tests.campaigns.fixtures_sending import (
    Setup,
    make_campaign,
    recording_fixture,  # noqa: F401 - fixture "recording"
    setup_fixture,  # noqa: F401 - fixture "setup"
    statuses,
)
from tests.campaigns.test_sending_pipeline import drain

LISTED = {
    "spring0@example.net": Suppression.Reason.UNSUBSCRIBE,
    "spring1@example.net": Suppression.Reason.HARD_BOUNCE,
    "spring2@example.net": Suppression.Reason.COMPLAINT,
    "spring3@example.net": Suppression.Reason.MANUAL,
}


def suppress_all(setup: Setup) -> None:
    for email, reason in LISTED.items():
        Suppression.objects.create(sending_account=setup.account, email=email.upper(), reason=reason)


def test_a_transactional_campaign_still_reaches_those_who_unsubscribed(
    setup: Setup, recording: RecordingProvider
) -> None:
    suppress_all(setup)
    campaign = make_campaign(setup, 6, promotional=False)

    queue_campaign(campaign.pk)

    assert statuses(campaign) == {"queued": 3, "suppressed": 3}
    drain(setup.account.pk)
    sent = set(Message.objects.filter(campaign=campaign, status="sent").values_list("to_email", flat=True))
    assert sent == {"spring0@example.net", "spring4@example.net", "spring5@example.net"}


def test_a_promotional_campaign_skips_every_suppression(setup: Setup, recording: RecordingProvider) -> None:
    suppress_all(setup)
    campaign = make_campaign(setup, 6, promotional=True)

    queue_campaign(campaign.pk)

    assert statuses(campaign) == {"queued": 2, "suppressed": 4}


def test_the_send_time_check_follows_the_same_rule(setup: Setup, recording: RecordingProvider) -> None:
    transactional = make_campaign(setup, 3, promotional=False, name="Receipt")
    promotional = make_campaign(setup, 3, promotional=True, name="Offer")
    queue_campaign(transactional.pk)
    queue_campaign(promotional.pk)
    # Listed after queueing: the worker's check decides.
    for name in ("receipt", "offer"):
        Suppression.objects.create(sending_account=setup.account, email=f"{name}0@example.net", reason="unsubscribe")
        Suppression.objects.create(sending_account=setup.account, email=f"{name}1@example.net", reason="hard_bounce")

    drain(setup.account.pk)

    assert statuses(transactional) == {"sent": 2, "suppressed": 1}
    assert Message.objects.get(campaign=transactional, to_email="receipt1@example.net").status == "suppressed"
    assert statuses(promotional) == {"sent": 1, "suppressed": 2}


def test_triggered_transactional_mail_ignores_an_unsubscribe_only(setup: Setup, recording: RecordingProvider) -> None:
    suppress_all(setup)

    unsubscribed, _c = queue_triggered(setup.account, setup.template, "spring0@example.net", {}, promotional=False)
    bounced, _c = queue_triggered(setup.account, setup.template, "spring1@example.net", {}, promotional=False)
    promotional, _c = queue_triggered(setup.account, setup.template, "spring0@example.net", {}, promotional=True)

    assert unsubscribed.status == Message.Status.QUEUED
    assert bounced.status == Message.Status.SUPPRESSED
    assert promotional.status == Message.Status.SUPPRESSED
