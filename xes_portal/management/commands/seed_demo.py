"""Create (or refresh) the demo organisation so that a newcomer can log in and look around.

Idempotent: running it twice changes nothing the second time. Prints the demo login.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from allauth.account.models import EmailAddress
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from accounts.models import Client, Membership, Organisation, SenderAddress, SendingAccount, User
from deliverability import services as domain_services
from deliverability.models import Domain
from plans import services as plan_services
from plans.models import AddOnProduct, AddOnSubscription, Plan, Subscription

DEMO_EMAIL = "demo@xes.example"
ADMIN_EMAIL = "admin@xes.example"
DEMO_ORG = "Demo Print & Marketing GmbH"


class Command(BaseCommand):
    help = "Create the demo organisation, clients, sending accounts, a verified sender and logins."

    def handle(self, *args: Any, **options: Any) -> None:
        # Demo data only: the password is public on purpose and can be changed with DEMO_PASSWORD.
        password = os.environ.get("DEMO_PASSWORD", "xes-demo-2026")
        with transaction.atomic():
            owner = self._user(DEMO_EMAIL, password, staff=False)
            self._user(ADMIN_EMAIL, password, staff=True)
            org, _ = Organisation.objects.get_or_create(
                name=DEMO_ORG,
                defaults={"billing_email": DEMO_EMAIL, "has_cross_media_configuration": True},
            )
            Membership.objects.get_or_create(user=owner, organisation=org, defaults={"role": Membership.Role.OWNER})
            bakery, _ = Client.objects.get_or_create(
                organisation=org, name="Bäckerei Sonnenschein", defaults={"contact_email": "info@baeckerei.example"}
            )
            Client.objects.get_or_create(
                organisation=org, name="Autohaus Nord", defaults={"contact_email": "marketing@autohaus-nord.example"}
            )
            main, _ = SendingAccount.objects.get_or_create(organisation=org, name="Main account")
            SendingAccount.objects.get_or_create(
                organisation=org, name="Bäckerei Sonnenschein", defaults={"client": bakery}
            )
            SenderAddress.objects.get_or_create(
                sending_account=main,
                email="news@demo-print.example",
                defaults={"display_name": "Demo Print News", "verified_at": timezone.now()},
            )
            self._plan_with_usage(org, bakery)
            self._addons_and_domain(org, main)
        self.stdout.write(f"demo login: {DEMO_EMAIL} / {password}")
        self.stdout.write(f"back-office login: {ADMIN_EMAIL} / {password} (at /admin/)")

    def _plan_with_usage(self, org: Organisation, bakery: Client) -> None:
        """A STANDARD term started two months ago with some e-mails used, so Plan & usage has data."""
        if Subscription.objects.filter(organisation=org).exists():
            return
        now = timezone.now()
        start = now - timedelta(days=60)
        plan_services.grant_plan(org, Plan.objects.get(code="STANDARD"), origin=Subscription.Origin.XES_TEAM, at=start)
        account = SendingAccount.objects.get(organisation=org, client=bakery)
        for days_ago, emails in ((55, 18_000), (40, 26_500), (21, 31_000), (6, 12_400)):
            at = now - timedelta(days=days_ago)
            reservation = plan_services.reserve(org, emails, sending_account=account, promotional=False, at=at)
            plan_services.consume(reservation, emails - 150, at=at)
            plan_services.release(reservation, at=at)

    def _addons_and_domain(self, org: Organisation, main: SendingAccount) -> None:
        """The second account's add-on, the Advanced Sender Package for the demo domain, and that
        domain in the wizard (its DNS checks ask the real DNS, which has no such records)."""
        now = timezone.now()
        for kind, name in (
            (AddOnProduct.Kind.ADDITIONAL_ACCOUNT, "baeckerei-sonnenschein.example"),
            (AddOnProduct.Kind.ADVANCED_SENDER, "demo-print.example"),
        ):
            AddOnSubscription.objects.get_or_create(
                organisation=org,
                product=AddOnProduct.objects.get(kind=kind),
                domain=name,
                defaults={"starts_at": now - timedelta(days=60), "ends_at": now + timedelta(days=305)},
            )
        if not Domain.objects.filter(sending_account=main, name="demo-print.example").exists():
            domain = domain_services.add_domain(main, "demo-print.example", Domain.DkimMode.EASY)
            domain_services.set_mail_from(domain, "mail")
            domain_services.set_dmarc(domain, Domain.DmarcPolicy.NONE, "dmarc@demo-print.example")
            domain_services.set_tracking(domain, "links")

    def _user(self, email: str, password: str, *, staff: bool) -> User:
        user = User.objects.filter(email=email).first()
        if user is None:
            user = User.objects.create_user(email=email, password=password, is_staff=staff, is_superuser=staff)
        EmailAddress.objects.get_or_create(user=user, email=email, defaults={"verified": True, "primary": True})
        return user
