"""`manage.py seed_demo` creates a usable demo and is idempotent."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiKey, Client, Membership, Organisation, SenderAddress, SendingAccount, User
from accounts.services import revoke_api_key
from campaigns.models import Template
from plans.models import CreditEntry, Subscription
from plans.services import pool, rebuild_balances


def _seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_it_creates_the_demo_and_prints_the_login(db, client) -> None:
    output = _seed()

    assert "demo login: demo@xes.example / xes-demo-2026" in output
    org = Organisation.objects.get()
    assert Client.objects.filter(organisation=org).count() == 2
    assert SendingAccount.objects.filter(organisation=org).count() == 2
    assert SenderAddress.objects.filter(sending_account__organisation=org, verified_at__isnull=False).count() == 1
    assert Membership.objects.get(organisation=org).role == Membership.Role.OWNER
    # a STANDARD term with some usage, so that Plan & usage shows a pool, a chart and a client
    demo_pool = pool(org)
    assert demo_pool.included == 1_000_000
    assert demo_pool.used == 18_000 + 26_500 + 31_000 + 12_400 - 4 * 150
    assert rebuild_balances(org) == []
    # the printed login works (allauth's e-mail login, e-mail already confirmed)
    response = client.post("/accounts/login/", {"login": "demo@xes.example", "password": "xes-demo-2026"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_it_is_idempotent(db) -> None:
    _seed()
    counts = [
        m.objects.count()
        for m in (User, Organisation, Client, SendingAccount, SenderAddress, Membership, Subscription, CreditEntry)
    ]

    _seed()

    assert [
        m.objects.count()
        for m in (User, Organisation, Client, SendingAccount, SenderAddress, Membership, Subscription, CreditEntry)
    ] == counts


def test_demo_password_comes_from_the_environment(db, monkeypatch) -> None:
    monkeypatch.setenv("DEMO_PASSWORD", "another-demo-pass")
    assert "demo@xes.example / another-demo-pass" in _seed()


# --- the API demo: a template and a key --------------------------------------------------------

DEMO_KEY_LINE = re.compile(r"^demo API key: (xes_[0-9a-f]{8}_[A-Za-z0-9_-]{43})$", re.M)


def _printed_key(output: str) -> str:
    found = DEMO_KEY_LINE.findall(output)
    assert len(found) == 1, output
    return str(found[0])


def test_it_prints_a_demo_api_key_that_works(db, client) -> None:
    raw = _printed_key(_seed())

    response = client.get("/api/v1/account", headers={"Authorization": f"Bearer {raw}"})

    assert response.status_code == 200
    assert response.json()["sending_account"]["name"] == "Main account"
    assert response.json()["organisation"]["name"] == "Demo Print & Marketing GmbH"
    assert response.json()["client"] is None


def test_the_demo_key_is_stored_only_as_a_hash(db) -> None:
    raw = _printed_key(_seed())

    key = ApiKey.objects.get()
    assert key.hashed_key == ApiKey.hash(raw)
    assert key.name == "Demo key"
    assert key.created_by == User.objects.get(email="demo@xes.example")
    secret = raw.split("_", 2)[2]
    assert not any(secret in str(getattr(key, f.attname)) for f in ApiKey._meta.concrete_fields)


def test_a_second_run_prints_the_same_key_and_creates_nothing(db) -> None:
    first = _printed_key(_seed())

    second = _printed_key(_seed())

    assert second == first
    assert ApiKey.objects.count() == 1
    assert Template.objects.count() == 1


def test_the_key_differs_between_installations(db, settings) -> None:
    first = _printed_key(_seed())
    settings.SECRET_KEY = "another-installation-secret-key-0123456789-abcdefghijklmnop"

    assert _printed_key(_seed()) != first


def test_a_demo_key_revoked_in_the_portal_stays_revoked(db, client) -> None:
    raw = _printed_key(_seed())
    revoke_api_key(ApiKey.objects.get())

    output = _seed()

    assert "demo API key: revoked in the portal" in output
    assert raw not in output
    assert client.get("/api/v1/account", headers={"Authorization": f"Bearer {raw}"}).status_code == 401
    assert ApiKey.objects.count() == 1


def test_the_demo_key_may_come_from_the_environment(db, monkeypatch) -> None:
    given = "xes_0badc0de_" + "A" * 43
    monkeypatch.setenv("DEMO_API_KEY", given)

    assert _printed_key(_seed()) == given
    assert ApiKey.objects.get().prefix == "0badc0de"


def test_a_malformed_demo_key_from_the_environment_is_refused(db, monkeypatch) -> None:
    monkeypatch.setenv("DEMO_API_KEY", "letmein")

    with pytest.raises(CommandError, match="DEMO_API_KEY must look like"):
        _seed()
    assert not ApiKey.objects.exists()


def test_it_creates_the_welcome_template_with_a_merge_field(db) -> None:
    _seed()

    template = Template.objects.get(slug="welcome")
    assert template.organisation.name == "Demo Print & Marketing GmbH"
    assert template.client is None
    assert "{{ data.first_name" in template.subject
    assert "{{ data.first_name" in template.body
    assert "{{ data.first_name" in template.text


def test_a_second_run_keeps_edits_to_the_welcome_template(db) -> None:
    _seed()
    Template.objects.filter(slug="welcome").update(subject="Edited")

    _seed()

    assert Template.objects.get(slug="welcome").subject == "Edited"
