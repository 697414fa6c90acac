"""Helpers for the segment tests: contacts, custom fields, campaigns, messages and events as rows."""

from __future__ import annotations

from itertools import count
from typing import Any

from accounts.models import Client, Organisation, SenderAddress, SendingAccount
from campaigns.models import Campaign, Contact, ContactList, CustomField, Message, MessageEvent, Template
from tests.factories import SenderAddressFactory

_seq = count(1)


def contact(organisation: Organisation, email: str, client: Client | None = None, **fields: Any) -> Contact:
    names = {k: fields.pop(k) for k in ("first_name", "last_name") if k in fields}
    return Contact.objects.create(organisation=organisation, client=client, email=email, fields=fields, **names)


def custom_field(organisation: Organisation, key: str, type: str, choices: list[str] | None = None) -> CustomField:
    return CustomField.objects.create(
        organisation=organisation, key=key, label=key.replace("_", " ").title(), type=type, choices=choices or []
    )


def contact_list(
    organisation: Organisation, name: str, *contacts: Contact, client: Client | None = None
) -> ContactList:
    lst = ContactList.objects.create(organisation=organisation, client=client, name=name)
    lst.contacts.add(*contacts)
    return lst


def campaign(account: SendingAccount, name: str = "Spring sale", sender: SenderAddress | None = None) -> Campaign:
    n = next(_seq)
    organisation = account.organisation
    if sender is None:
        sender = SenderAddress.objects.get(pk=SenderAddressFactory(sending_account=account).pk)
    template = Template.objects.create(
        organisation=organisation, client=account.client, name=f"T{n}", slug=f"t{n}", subject="Hi", body="<p>Hi</p>"
    )
    return Campaign.objects.create(
        organisation=organisation, sending_account=account, sender=sender, template=template, name=name
    )


def message(campaign: Campaign, to: Contact, status: str = Message.Status.DELIVERED) -> Message:
    return Message.objects.create(
        organisation=campaign.organisation,
        sending_account=campaign.sending_account,
        campaign=campaign,
        contact=to,
        template=campaign.template,
        sender=campaign.sender,
        to_email=to.email,
        status=status,
    )


def event(message: Message, type: str, **data: Any) -> MessageEvent:
    return MessageEvent.objects.create(message=message, type=type, data=data)
