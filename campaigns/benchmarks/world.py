"""The data the pipeline benchmarks send to: an organisation with credits, a sending account, a
verified sender, the canonical template with its two rules, and N contacts on a list.

Contacts and list memberships are written with ``INSERT ... SELECT generate_series`` (not part of
any measured time); each contact varies (address, tracking token, points, country), so nothing can be
cached across recipients. Every organisation made here is named ``bench-pipeline-...``;
:func:`cleanup` removes them and everything they own.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Organisation, SenderAddress, SendingAccount
from campaigns.benchmarks.render import canonical
from campaigns.models import Campaign, Contact, ContactList, ListMembership, Message, MessageEvent, Rule, Template
from deliverability.models import Suppression
from deliverability.providers import ensure_setup
from plans import services as credits
from plans.models import CreditAccount, CreditEntry, Plan, Reservation, ReservationPart, Subscription

PREFIX = "bench-pipeline-"
# Contact fields stored in columns; the rest of the canonical contact goes to ``fields``.
COLUMNS = ("email", "first_name", "last_name")


@dataclass
class World:
    organisation: Organisation
    account: SendingAccount
    sender: SenderAddress
    template: Template
    contact_list: ContactList
    contacts: int

    def campaign(self, name: str = "Bench", *, tracking: bool = False) -> Campaign:
        """A draft promotional campaign to the whole list; without open and click tracking unless
        asked for, so that the message is the same one that django-post-office and the SES
        stand-in measurements send (tracking rewrites its 20 personalised links)."""
        return Campaign.objects.create(
            organisation=self.organisation,
            sending_account=self.account,
            sender=self.sender,
            template=self.template,
            contact_list=self.contact_list,
            name=name,
            promotional=True,
            tracking=tracking,
        )


def make_world(contacts: int, *, credits_needed: int | None = None, suppressed: int = 0) -> World:
    """An organisation with a plan of enough credits and ``contacts`` varied contacts on one list.

    ``suppressed`` addresses go on the account's suppression list: half of them are contacts of the
    list (every k-th one, so the filter removes real recipients), half are other addresses."""
    stamp = time.monotonic_ns()
    organisation = Organisation.objects.create(name=f"{PREFIX}{stamp}")
    account = SendingAccount.objects.create(organisation=organisation, name="Bench")
    ensure_setup(account)
    sender = SenderAddress.objects.create(
        sending_account=account, email="news@bench.example", display_name="XES Bench", verified_at=timezone.now()
    )
    plan = Plan.objects.create(
        code=f"{PREFIX}{stamp}"[:40],
        name="Bench",
        emails_per_year=max(1, credits_needed or contacts),
        price_per_1000=Decimal("1.00"),
        eligibility=Plan.Eligibility.ANY,
        orderable=False,
    )
    credits.grant_plan(organisation, plan, origin=Subscription.Origin.XES_TEAM)
    credits.update_overage_settings(organisation, allow_overage=False, monthly_limit=None)
    data = canonical()
    template = data.template
    template.organisation = organisation
    template.save()
    for rule in data.rules:
        rule.organisation = organisation
        rule.save()
    contact_list = ContactList.objects.create(organisation=organisation, name="Bench")
    _insert_contacts(organisation.pk, contact_list.pk, contacts, dict(data.contact))
    if suppressed:
        _insert_suppressions(account.pk, contacts, suppressed)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Contact._meta.db_table}")
        cursor.execute(f"ANALYZE {ListMembership._meta.db_table}")
        cursor.execute(f"ANALYZE {Suppression._meta.db_table}")
    return World(organisation, account, sender, template, contact_list, contacts)


def _insert_contacts(organisation_id: int, list_id: int, n: int, base: dict[str, object]) -> None:
    """``n`` contacts built from the canonical one, varied per row, and their list memberships."""
    fields = {k: v for k, v in base.items() if k not in COLUMNS}
    local, _at, domain = str(base["email"]).partition("@")
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Contact._meta.db_table}
                (organisation_id, client_id, email, first_name, last_name, fields, created_at, updated_at)
            SELECT %s, NULL, %s || '+' || g || '@' || %s, %s, %s,
                   %s::jsonb || jsonb_build_object(
                       'tracking_token', 'tok_' || lpad(to_hex(g), 8, '0'),
                       'points', (g * 37) %% 300,
                       'country', CASE WHEN g %% 3 = 0 THEN 'AT' ELSE 'DE' END),
                   %s, %s
            FROM generate_series(1, %s) AS g
            """,
            [
                organisation_id,
                local,
                domain,
                str(base["first_name"]),
                str(base["last_name"]),
                json.dumps(fields),
                now,
                now,
                n,
            ],
        )
        cursor.execute(
            f"""
            INSERT INTO {ListMembership._meta.db_table} (contact_list_id, contact_id, added_at)
            SELECT %s, id, %s FROM {Contact._meta.db_table} WHERE organisation_id = %s
            """,
            [list_id, now, organisation_id],
        )


def _insert_suppressions(account_id: int, contacts: int, n: int) -> None:
    """Half of ``n`` on the list (spread evenly), half addresses that are not contacts."""
    on_list = min(contacts, n // 2)
    step = max(1, contacts // max(1, on_list))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Suppression._meta.db_table} (sending_account_id, email, reason, note, created_at)
            SELECT %s, 'juergen.mueller+' || (g * %s) || '@example.com', 'unsubscribe', '', now()
            FROM generate_series(1, %s) AS g
            UNION ALL
            SELECT %s, 'gone' || g || '@elsewhere.example', 'hard_bounce', '', now()
            FROM generate_series(1, %s) AS g
            """,
            [account_id, step, on_list, account_id, n - on_list],
        )


def cleanup() -> None:
    """Remove every ``bench-pipeline-`` organisation and what it owns (plans included).

    The outbox and contact tables are emptied with TRUNCATE when only benchmark organisations have
    rows there (the usual case on the bench database: seconds faster than deleting a million rows),
    with DELETE otherwise. The credit ledger is append-only for the ORM, so it goes in SQL."""
    ids = list(Organisation.objects.filter(name__startswith=PREFIX).values_list("pk", flat=True))
    if not ids:
        return
    big = [MessageEvent, Message, ListMembership, Contact]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {Message._meta.db_table} WHERE organisation_id <> ALL(%s))"
            f" OR EXISTS (SELECT 1 FROM {Contact._meta.db_table} WHERE organisation_id <> ALL(%s))",
            [ids, ids],
        )
        (others,) = cursor.fetchone()
        if not others:
            cursor.execute("TRUNCATE " + ", ".join(m._meta.db_table for m in big))
        else:
            cursor.execute(
                f"DELETE FROM {MessageEvent._meta.db_table} WHERE message_id IN "
                f"(SELECT id FROM {Message._meta.db_table} WHERE organisation_id = ANY(%s))",
                [ids],
            )
            cursor.execute(f"DELETE FROM {Message._meta.db_table} WHERE organisation_id = ANY(%s)", [ids])
            cursor.execute(
                f"DELETE FROM {ListMembership._meta.db_table} WHERE contact_id IN "
                f"(SELECT id FROM {Contact._meta.db_table} WHERE organisation_id = ANY(%s))",
                [ids],
            )
            cursor.execute(f"DELETE FROM {Contact._meta.db_table} WHERE organisation_id = ANY(%s)", [ids])
        cursor.execute(f"DELETE FROM {Campaign._meta.db_table} WHERE organisation_id = ANY(%s)", [ids])
        reservations = f"SELECT id FROM {Reservation._meta.db_table} WHERE organisation_id = ANY(%s)"
        cursor.execute(f"DELETE FROM {ReservationPart._meta.db_table} WHERE reservation_id IN ({reservations})", [ids])
        for model in (CreditEntry, Reservation, Subscription, CreditAccount):
            cursor.execute(f"DELETE FROM {model._meta.db_table} WHERE organisation_id = ANY(%s)", [ids])
        Template.objects.filter(organisation_id__in=ids).delete()
        Rule.objects.filter(organisation_id__in=ids).delete()
        Organisation.objects.filter(pk__in=ids).delete()
        Plan.objects.filter(code__startswith=PREFIX).delete()
