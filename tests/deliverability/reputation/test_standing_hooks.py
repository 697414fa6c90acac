"""Campaigns follow the standing: probation pauses promotional campaigns (transactional ones keep
sending), suspension pauses all of them; paused, never failed, and their credits are given back."""

from __future__ import annotations

from typing import Any

import pytest

from accounts.models import User
from campaigns.models import Campaign
from campaigns.sending import queue_campaign
from deliverability.reputation import services
from tests.campaigns.fixtures_sending import (
    Setup,
    make_campaign,
    outstanding_for,
    setup_fixture,  # noqa: F401 - fixture "setup"
    statuses,
)
from tests.deliverability.reputation.helpers import day, evaluate_at, traffic

pytestmark = pytest.mark.django_db
Status = Campaign.Status


@pytest.fixture
def running(setup: Setup) -> tuple[Campaign, Campaign]:
    """A promotional and a transactional campaign, both sending (rows queued, credits reserved)."""
    promotional = make_campaign(setup, 5, promotional=True, name="Offers")
    transactional = make_campaign(setup, 5, promotional=False, name="Receipts")
    queue_campaign(promotional.pk)
    queue_campaign(transactional.pk)
    return promotional, transactional


def status(campaign: Campaign) -> str:
    campaign.refresh_from_db()
    return campaign.status


def test_probation_pauses_promotional_campaigns_only(
    setup: Setup, running: tuple[Campaign, Campaign], staff_user: User, django_capture_on_commit_callbacks: Any
) -> None:
    promotional, transactional = running

    with django_capture_on_commit_callbacks(execute=True):
        services.put_on_probation(setup.account, by=staff_user, note="Complaints from one list.")

    assert status(promotional) == Status.PAUSED
    assert "XES team put the account on probation" in promotional.paused_reason
    assert status(transactional) == Status.SENDING
    assert statuses(promotional) == {"queued": 5}  # nothing failed
    assert outstanding_for(setup) == 5  # the promotional credits went back; the transactional ones stay


def test_suspension_pauses_every_campaign(
    setup: Setup, running: tuple[Campaign, Campaign], staff_user: User, django_capture_on_commit_callbacks: Any
) -> None:
    promotional, transactional = running

    with django_capture_on_commit_callbacks(execute=True):
        services.suspend(setup.account, by=staff_user, note="Spam trap hits.")

    assert (status(promotional), status(transactional)) == (Status.PAUSED, Status.PAUSED)
    assert statuses(transactional) == {"queued": 5}
    assert outstanding_for(setup) == 0


def test_the_scheduled_evaluation_pauses_campaigns_of_a_suspended_account(
    setup: Setup, running: tuple[Campaign, Campaign], django_capture_on_commit_callbacks: Any
) -> None:
    promotional, transactional = running
    traffic(setup.account, day(0), sent=1000, hard=90)

    with django_capture_on_commit_callbacks(execute=True):
        evaluate_at(day(0, 13))

    assert (status(promotional), status(transactional)) == (Status.PAUSED, Status.PAUSED)
    assert "Suspension level reached" in promotional.paused_reason


def test_a_warning_or_a_lift_pauses_and_resumes_nothing(
    setup: Setup, running: tuple[Campaign, Campaign], staff_user: User, django_capture_on_commit_callbacks: Any
) -> None:
    promotional, transactional = running
    with django_capture_on_commit_callbacks(execute=True):
        services.put_on_probation(setup.account, by=staff_user, note="Review.")
        services.lift_probation(setup.account, by=staff_user, note="Cleaned.")

    assert status(promotional) == Status.PAUSED  # the customer resumes it
    assert status(transactional) == Status.SENDING


def test_the_rate_factor_slows_probation_down(setup: Setup, staff_user: User) -> None:
    assert services.rate_factor(setup.account) == 1.0

    services.put_on_probation(setup.account, by=staff_user, note="Review.")
    setup.account.refresh_from_db()

    assert services.rate_factor(setup.account) == 0.5
