"""Pre-send checks of a campaign: what blocks sending and what only deserves a warning.

Each check answers in plain words. The campaign page shows them before "Send"; the send service
runs them again (the state may have changed since the page was shown) and refuses on a blocker.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils.translation import gettext as _

from accounts.models import SendingAccount
from campaigns.models import Campaign, Contact, Message, Rule
from campaigns.rendering import check_template
from campaigns.segments import recipients as segment_recipients
from deliverability.models import Domain
from plans import services as plan_services

# How many recipients the template is tried on before sending.
SAMPLE_SIZE = 5
UNSUBSCRIBE_MARKER = "unsubscribe_url"


class Level(StrEnum):
    BLOCK = "block"
    WARN = "warn"
    OK = "ok"


@dataclass(frozen=True)
class Check:
    key: str
    level: Level
    message: str


class _DryRun(Exception):
    """Raised inside a transaction to undo a trial reservation."""


def recipients(campaign: Campaign):  # type: ignore[no-untyped-def]
    """The contacts a campaign would go to (before suppressions), as a queryset."""
    if campaign.resend_of_id is not None:
        # "Send again": received the original, and no open (a click counts as one) or no click.
        kinds = ["click"] if campaign.resend_filter == Campaign.Resend.NOT_CLICKED else ["open", "click"]
        original = Message.objects.filter(campaign=campaign.resend_of_id, contact=OuterRef("pk"))
        received = original.filter(status__in=[Message.Status.SENT, Message.Status.DELIVERED])
        responded = original.filter(events__type__in=kinds, events__machine=False)  # machines are no response
        return Contact.objects.filter(Exists(received)).exclude(Exists(responded))
    if campaign.segment is not None:
        return segment_recipients(campaign.segment)
    if campaign.contact_list_id:
        return Contact.objects.filter(lists=campaign.contact_list_id)
    return Contact.objects.none()


def run_checks(campaign: Campaign) -> list[Check]:
    """All pre-send checks, blockers first."""
    account = campaign.sending_account
    count = recipients(campaign).count()
    checks = [
        _recipients(count),
        _sender(campaign),
        _standing(account, campaign.promotional),
        _dkim(campaign),
        _unsubscribe_link(campaign),
        _credits(campaign, count),
        *_template(campaign),
    ]
    order = {Level.BLOCK: 0, Level.WARN: 1, Level.OK: 2}
    return sorted((c for c in checks if c is not None), key=lambda c: order[c.level])


def blockers(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.level == Level.BLOCK]


def _recipients(count: int) -> Check:
    if count == 0:
        return Check("recipients", Level.BLOCK, _("The list or segment has no recipients."))
    return Check("recipients", Level.OK, _("%(n)s recipients before suppressions.") % {"n": f"{count:,}"})


def _sender(campaign: Campaign) -> Check:
    sender = campaign.sender
    if sender.sending_account_id != campaign.sending_account_id:
        return Check("sender", Level.BLOCK, _("The sender address belongs to another sending account."))
    if not sender.is_verified:
        return Check(
            "sender",
            Level.BLOCK,
            _("%(email)s is not verified yet. Its owner must click the link in the verification e-mail.")
            % {"email": sender.email_display},
        )
    return Check("sender", Level.OK, _("The sender address is verified."))


def _standing(account: SendingAccount, promotional: bool) -> Check:
    if account.standing == SendingAccount.Standing.SUSPENDED:
        return Check("standing", Level.BLOCK, _("The sending account is suspended: nothing can be sent from it."))
    if account.standing == SendingAccount.Standing.PROBATION and promotional:
        return Check(
            "standing",
            Level.BLOCK,
            _("The sending account is on probation: promotional mail is paused, transactional mail still goes."),
        )
    if account.standing == SendingAccount.Standing.WARNING:
        return Check(
            "standing",
            Level.WARN,
            _("The sending account has a warning for bounces or complaints. Clean the list before sending."),
        )
    return Check("standing", Level.OK, _("The sending account is in good standing."))


def _dkim(campaign: Campaign) -> Check:
    domain_name = campaign.sender.email.rsplit("@", 1)[-1]
    domain = Domain.objects.filter(sending_account=campaign.sending_account_id, name=domain_name).first()
    if domain is None or not domain.is_verified:
        return Check(
            "dkim",
            Level.WARN,
            _(
                "The domain %(domain)s is not verified with DKIM in this account. Mail then fails DMARC at "
                "many receivers; set the domain up under Domains."
            )
            % {"domain": domain_name},
        )
    return Check("dkim", Level.OK, _("%(domain)s signs with DKIM.") % {"domain": domain.display_name})


def _unsubscribe_link(campaign: Campaign) -> Check | None:
    if not campaign.promotional:
        return None
    template = campaign.template
    if UNSUBSCRIBE_MARKER not in template.body and UNSUBSCRIBE_MARKER not in template.text:
        return Check(
            "unsubscribe",
            Level.BLOCK,
            _(
                "Promotional mail needs an unsubscribe link in its content: add "
                "{{ message.unsubscribe_url }} to the template."
            ),
        )
    return Check("unsubscribe", Level.OK, _("The content has an unsubscribe link."))


def _credits(campaign: Campaign, count: int) -> Check | None:
    """A trial reservation, undone at once: the same rules as the real one give the same answer."""
    if count == 0:
        return None
    try:
        with transaction.atomic():
            plan_services.reserve(
                campaign.organisation,
                count,
                sending_account=campaign.sending_account,
                promotional=campaign.promotional,
                purpose="pre-send check",
            )
            raise _DryRun
    except _DryRun:
        return Check("credits", Level.OK, _("Enough credits for every recipient."))
    except plan_services.CreditRefused as refused:
        return Check("credits", Level.BLOCK, str(refused))


def _template(campaign: Campaign) -> list[Check]:
    """Render the template for a few real recipients; any error blocks."""
    samples = list(recipients(campaign)[:SAMPLE_SIZE])
    rules = list(Rule.objects.filter(organisation=campaign.organisation_id))
    problems = [p for p in check_template(campaign.template, rules, samples) if p.severity == "error"]
    if problems:
        return [Check("template", Level.BLOCK, str(problem)) for problem in problems]
    return [Check("template", Level.OK, _("The template renders for sample recipients."))]
