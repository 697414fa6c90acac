"""Fixtures of the sending-pipeline tests: a sending set-up with credits, contacts, a template, a
campaign, and the recording provider (our own test/bench provider, see
:mod:`campaigns.sending.providers`). Import the fixtures into a test module to use them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from accounts.models import Organisation, SenderAddress, SendingAccount
from campaigns.models import Campaign, Contact, ContactList, ListMembership, Message, Template
from campaigns.sending.providers import ENV_VARIABLE, RecordingProvider, override
from plans import services as credits
from plans.models import Plan, Reservation, Subscription
from tests.factories import OrganisationFactory, SendingAccountFactory, VerifiedSenderFactory

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Setup:
    organisation: Organisation
    account: SendingAccount
    sender: SenderAddress
    template: Template
    term: Subscription


def make_setup(emails: int = 100_000) -> Setup:
    """An organisation with a plan of ``emails`` credits, a sending account, a verified sender and a
    personalised template (with an unsubscribe link)."""
    organisation = OrganisationFactory(name="Sendco")
    account = SendingAccountFactory(organisation=organisation, name="Sendco main")
    sender = VerifiedSenderFactory(sending_account=account, email="news@sendco.example", display_name="Sendco")
    plan = Plan.objects.create(
        code=f"test-sending-{emails}-{organisation.pk}",
        name="Sending test",
        emails_per_year=emails,
        price_per_1000=Decimal("1.00"),
        eligibility=Plan.Eligibility.ANY,
    )
    term = credits.grant_plan(organisation, plan, origin=Subscription.Origin.XES_TEAM)
    credits.update_overage_settings(organisation, allow_overage=False, monthly_limit=None)
    template = Template.objects.create(
        organisation=organisation,
        name="News",
        slug="news",
        subject="Hello {{ contact.first_name }}",
        body='<p>Hi {{ contact.first_name }}!</p><p><a href="{{ message.unsubscribe_url }}">Unsubscribe</a></p>',
    )
    return Setup(organisation, account, sender, template, term)


def make_campaign(setup: Setup, recipients: int, *, promotional: bool = True, name: str = "Spring") -> Campaign:
    """A draft campaign to a list of ``recipients`` new contacts (bulk-created)."""
    contact_list = ContactList.objects.create(organisation=setup.organisation, name=f"{name} list")
    now = timezone.now()
    contacts = Contact.objects.bulk_create(
        Contact(
            organisation=setup.organisation,
            email=f"{name.lower()}{n}@example.net",
            first_name=f"P{n}",
            created_at=now,
            updated_at=now,
        )
        for n in range(recipients)
    )
    ListMembership.objects.bulk_create(ListMembership(contact_list=contact_list, contact=c) for c in contacts)
    return Campaign.objects.create(
        organisation=setup.organisation,
        sending_account=setup.account,
        sender=setup.sender,
        template=setup.template,
        name=name,
        contact_list=contact_list,
        promotional=promotional,
    )


def statuses(campaign: Campaign) -> dict[str, int]:
    rows = Message.objects.filter(campaign=campaign).order_by().values_list("status")
    result: dict[str, int] = {}
    for (status,) in rows:
        result[status] = result.get(status, 0) + 1
    return result


def consumed_for(setup: Setup) -> int:
    """Credits consumed by the organisation, from the reservations (and the term's balance)."""
    total = sum(r.consumed for r in Reservation.objects.filter(organisation=setup.organisation))
    term = Subscription.objects.get(pk=setup.term.pk)
    assert term.used == total
    return total


def outstanding_for(setup: Setup) -> int:
    return sum(r.outstanding for r in Reservation.objects.filter(organisation=setup.organisation))


@pytest.fixture(name="setup")
def setup_fixture(db: None) -> Setup:
    return make_setup()


@pytest.fixture(name="recording")
def recording_fixture() -> Iterator[RecordingProvider]:
    """The recording provider for every send of this process (Redis is flushed around each test)."""
    provider = RecordingProvider()
    provider.reset()
    with override(provider):
        yield provider


def worker_env() -> dict[str, str]:
    """Environment for a worker subprocess: this test database and Redis, the recording provider."""
    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host, port, name = db["HOST"] or "127.0.0.1", db["PORT"] or 5432, connection.settings_dict["NAME"]
    url = f"postgres://{db['USER']}{password}@{host}:{port}/{name}"
    env = dict(os.environ)
    env.update(
        DJANGO_ENV="test",
        DATABASE_URL=url,
        REDIS_URL=settings.REDIS_URL,
        **{ENV_VARIABLE: RecordingProvider.name},
    )
    return env


def start_worker(*queues: str, burst: bool = True) -> subprocess.Popen[bytes]:
    """A real RQ worker process (``manage.py rqworker sending --burst``) in its own process group,
    so a SIGKILL to the group also kills the work-horse it forked."""
    args = [sys.executable, "manage.py", "rqworker", *(queues or ("sending",))]
    if burst:
        args.append("--burst")
    return subprocess.Popen(
        args,
        cwd=ROOT,
        env=worker_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
