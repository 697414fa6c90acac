"""`manage.py seed_demo` creates a usable demo and is idempotent."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command

from accounts.models import Client, Membership, Organisation, SenderAddress, SendingAccount, User
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
