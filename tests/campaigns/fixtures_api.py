"""Fixtures of the API tests: a sending account with a key, a verified sender, a template and credits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils import timezone

from accounts import services as account_services
from accounts.models import ApiKey, SenderAddress, SendingAccount
from campaigns.models import Message, Template
from plans import services as plan_services
from plans.models import Plan, Subscription
from tests.conftest import Tenant

WELCOME_BODY = "<p>Hello {{ data.first_name }}</p>"


def make_template(account: SendingAccount, slug: str = "welcome", **fields: Any) -> Template:
    return Template.objects.create(
        organisation=account.organisation,
        client=fields.pop("client", None),
        name=fields.pop("name", slug.title()),
        slug=slug,
        subject=fields.pop("subject", "Hello {{ data.first_name }}"),
        body=fields.pop("body", WELCOME_BODY),
        **fields,
    )


def make_message(api: Api, **fields: Any) -> Message:
    values: dict[str, Any] = {
        "organisation": api.account.organisation,
        "sending_account": api.account,
        "template": api.template,
        "sender": api.sender,
        "to_email": "ada@example.com",
        "data": {"first_name": "Ada"},
        "promotional": False,
        **fields,
    }
    return Message.objects.create(**values)


def give_credits(account: SendingAccount) -> None:
    if not Subscription.objects.filter(organisation=account.organisation).exists():
        plan_services.grant_plan(
            account.organisation, Plan.objects.get(code="STANDARD"), origin=Subscription.Origin.XES_TEAM
        )


@dataclass
class Api:
    """An API caller: the key of ``account`` and helpers for the two message endpoints."""

    http: HttpClient
    raw: str
    key: ApiKey
    account: SendingAccount
    sender: SenderAddress
    template: Template

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.raw}", **extra}

    def send(self, body: Any, *, raw_body: str | None = None, **headers: str) -> Any:
        payload = raw_body if raw_body is not None else json.dumps(body)
        return self.http.post(
            reverse("api_messages"), payload, content_type="application/json", headers=self.headers(**headers)
        )

    def get(self, pk: int) -> Any:
        return self.http.get(reverse("api_message_detail", args=[pk]), headers=self.headers())

    def body(self, **fields: Any) -> dict[str, Any]:
        """A valid request body, with ``fields`` changed (``None`` drops a field)."""
        values: dict[str, Any] = {"template": "welcome", "to": "ada@example.com", "data": {"first_name": "Ada"}}
        values.update(fields)
        return {k: v for k, v in values.items() if v is not None}


def api_for(account: SendingAccount, sender: SenderAddress, template: Template) -> Api:
    key, raw = account_services.create_api_key(account, "workflow server", None)
    return Api(HttpClient(), raw, key, account, sender, template)


@pytest.fixture(name="api")
def api_fixture(tenant: Tenant) -> Api:
    """Alpha's sending account (of client A) with a key, its verified sender, the organisation's
    ``welcome`` template and a STANDARD plan."""
    SenderAddress.objects.filter(pk=tenant.sender_a.pk).update(verified_at=timezone.now())
    tenant.sender_a.refresh_from_db()
    give_credits(tenant.account_a)
    return api_for(tenant.account_a, tenant.sender_a, make_template(tenant.account_a))
