"""Create (or refresh) the demo organisation so that a newcomer can log in and look around.

Idempotent: running it twice changes nothing the second time. Prints the demo login and the demo
API key.

API keys are stored only as hashes, so a random key could not be printed again on the second run.
The demo key is therefore *derived* from SECRET_KEY (or taken from DEMO_API_KEY): every run prints
the same key, and the database still holds only its hash. Whoever knows SECRET_KEY can sign sessions
anyway, so the derivation gives nothing away. A demo key revoked in the portal stays revoked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from datetime import timedelta
from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from accounts.constants import API_KEY_PREFIX
from accounts.models import ApiKey, Client, Membership, Organisation, SenderAddress, SendingAccount, User
from campaigns.models import Template
from deliverability import services as domain_services
from deliverability.models import Domain
from plans import services as plan_services
from plans.models import AddOnProduct, AddOnSubscription, Plan, Subscription

DEMO_EMAIL = "demo@xes.example"
ADMIN_EMAIL = "admin@xes.example"
DEMO_ORG = "Demo Print & Marketing GmbH"
DEMO_KEY_NAME = "Demo key"
RAW_KEY = re.compile(rf"^{API_KEY_PREFIX}_([0-9a-f]{{8}})_[A-Za-z0-9_-]{{43}}$")

WELCOME_SUBJECT = "Welcome, {{ data.first_name | default: 'friend' }}!"
WELCOME_HTML = """<html><body>
<h1>Welcome, {{ data.first_name | default: "friend" }}!</h1>
<p>Thank you for ordering with Demo Print &amp; Marketing. We will tell you as soon as your print job
{% if data.order %}<strong>{{ data.order }}</strong> {% endif %}is on its way.</p>
<p>Your Demo Print team</p>
</body></html>
"""
WELCOME_TEXT = """Welcome, {{ data.first_name | default: "friend" }}!

Thank you for ordering with Demo Print & Marketing. We will tell you as soon as your print job
{% if data.order %}{{ data.order }} {% endif %}is on its way.

Your Demo Print team
"""


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
            self._welcome_template(org)
            raw_key = demo_api_key()
            key_line = self._api_key(main, owner, raw_key)
        self.stdout.write(f"demo login: {DEMO_EMAIL} / {password}")
        self.stdout.write(f"back-office login: {ADMIN_EMAIL} / {password} (at /admin/)")
        self.stdout.write(key_line)

    def _welcome_template(self, org: Organisation) -> None:
        """The template of the README's API example (``"template": "welcome"``); edits are kept."""
        Template.objects.get_or_create(
            organisation=org,
            slug="welcome",
            defaults={
                "name": "Welcome",
                "subject": WELCOME_SUBJECT,
                "preheader": "Your order is in good hands.",
                "body": WELCOME_HTML,
                "text": WELCOME_TEXT,
            },
        )

    def _api_key(self, main: SendingAccount, owner: User, raw: str) -> str:
        """Store the demo key's hash once; answer the line to print."""
        key = ApiKey.objects.filter(hashed_key=ApiKey.hash(raw)).first()
        if key is None:
            match = RAW_KEY.match(raw)
            assert match is not None  # checked by demo_api_key()
            key = ApiKey.objects.create(
                sending_account=main,
                name=DEMO_KEY_NAME,
                prefix=match.group(1),
                hashed_key=ApiKey.hash(raw),
                created_by=owner,
            )
        if not key.is_active:
            return "demo API key: revoked in the portal; create a new one under API keys"
        return f"demo API key: {raw}"

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


def demo_api_key() -> str:
    """The demo key: DEMO_API_KEY, or one derived from SECRET_KEY (stable across runs)."""
    given = os.environ.get("DEMO_API_KEY", "").strip()
    if given:
        if not RAW_KEY.match(given):
            raise CommandError(f"DEMO_API_KEY must look like {API_KEY_PREFIX}_<8 hex digits>_<43 URL-safe characters>.")
        return given
    secret = settings.SECRET_KEY.encode()

    def derive(purpose: bytes) -> bytes:
        return hmac.new(secret, b"xes-portal demo API key " + purpose, hashlib.sha256).digest()

    prefix = derive(b"prefix")[:4].hex()
    body = base64.urlsafe_b64encode(derive(b"secret")).rstrip(b"=").decode()
    return f"{API_KEY_PREFIX}_{prefix}_{body}"
