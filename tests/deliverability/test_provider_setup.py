"""Connecting a sending account to its provider: ``ensure_setup`` creates the account's configuration set
(and tenant) once, records failures in plain words, keeps the provider an account was set up with,
and is safe when several requests set up the same account at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from django.db import connection
from moto import mock_aws

from deliverability.models import ProviderSetup
from deliverability.providers import (
    ProviderError,
    Throttled,
    account_resource_name,
    ensure_setup,
    get_provider,
    provider_for,
)
from deliverability.providers.sandbox import SandboxProvider
from deliverability.providers.ses import SesProvider
from tests.conftest import Tenant
from tests.factories import OrganisationFactory, SendingAccountFactory

REGION = "eu-central-1"


@pytest.fixture(autouse=True)
def _defaults(settings: Any) -> None:
    settings.DELIVERY_PROVIDER = "sandbox"
    settings.SES_NAME_PREFIX = "xes"
    settings.SES_EVENT_TOPIC_ARN = ""
    settings.AWS_REGION = REGION


@pytest.fixture
def moto_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    with mock_aws():
        yield


@pytest.mark.django_db
def test_first_call_sets_the_account_up_with_the_default_provider(tenant: Tenant) -> None:
    # when
    setup = ensure_setup(tenant.account_a)
    # then
    name = f"xes-acct-{tenant.account_a.pk}"
    assert setup.pk is not None
    assert setup.sending_account == tenant.account_a
    assert setup.provider == ProviderSetup.Provider.SANDBOX
    assert setup.configuration_set == name
    assert setup.tenant == name
    assert setup.ready_at is not None
    assert setup.last_error == ""
    assert isinstance(provider_for(setup), SandboxProvider)


@pytest.mark.django_db
def test_names_use_the_configured_prefix(tenant: Tenant, settings: Any) -> None:
    settings.SES_NAME_PREFIX = "xes-staging"
    setup = ensure_setup(tenant.account_b)
    assert setup.configuration_set == f"xes-staging-acct-{tenant.account_b.pk}"
    assert account_resource_name(5) == "xes-staging-acct-5"


@pytest.mark.django_db
def test_a_ready_account_is_not_set_up_again(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    # given
    first = ensure_setup(tenant.account_a)
    calls: list[ProviderSetup] = []
    monkeypatch.setattr(SandboxProvider, "ensure_account", lambda self, setup: calls.append(setup))
    # when
    again = ensure_setup(tenant.account_a)
    # then
    assert again.pk == first.pk
    assert again.ready_at == first.ready_at
    assert calls == []
    assert ProviderSetup.objects.filter(sending_account=tenant.account_a).count() == 1


@pytest.mark.django_db
def test_each_account_gets_its_own_configuration_set(tenant: Tenant) -> None:
    names = {
        ensure_setup(account).configuration_set for account in (tenant.account_org, tenant.account_a, tenant.account_b)
    }
    assert len(names) == 3


@pytest.mark.django_db
def test_provider_error_is_recorded_and_raised_then_a_retry_succeeds(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the provider is busy
    def busy(self: SandboxProvider, setup: ProviderSetup) -> None:
        raise Throttled("Amazon SES is receiving too many requests right now.", code="TooManyRequestsException")

    monkeypatch.setattr(SandboxProvider, "ensure_account", busy)
    # when
    with pytest.raises(Throttled):
        ensure_setup(tenant.account_a)
    # then: the row exists, not ready, with the error in words and code
    setup = ProviderSetup.objects.get(sending_account=tenant.account_a)
    assert setup.ready_at is None
    assert setup.last_error == "Amazon SES is receiving too many requests right now. (TooManyRequestsException)"
    # when: the provider is back
    monkeypatch.undo()
    setup = ensure_setup(tenant.account_a)
    # then
    assert setup.ready_at is not None
    assert setup.last_error == ""


@pytest.mark.django_db
def test_ses_set_up_creates_the_configuration_set_at_ses(tenant: Tenant, settings: Any, moto_aws: None) -> None:
    # given: SES, tenants switched off (moto has none)
    settings.DELIVERY_PROVIDER = "ses"
    settings.SES_TENANTS = False
    # when
    setup = ensure_setup(tenant.account_a)
    # then
    assert setup.provider == ProviderSetup.Provider.SES
    assert setup.tenant == ""
    assert setup.ready_at is not None
    client = boto3.client("sesv2", region_name=REGION)
    assert client.list_configuration_sets()["ConfigurationSets"] == [setup.configuration_set]


@pytest.mark.django_db
def test_ses_clears_the_tenant_when_tenants_are_not_available(
    tenant: Tenant, settings: Any, moto_aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a set-up made while tenants were expected, but this installation cannot use them
    settings.DELIVERY_PROVIDER = "ses"
    name = account_resource_name(tenant.account_a.pk)
    ProviderSetup.objects.create(sending_account=tenant.account_a, provider="ses", configuration_set=name, tenant=name)
    monkeypatch.setattr(SesProvider, "_tenants_available", lambda self: False)
    # when
    setup = ensure_setup(tenant.account_a)
    # then
    setup.refresh_from_db()
    assert setup.tenant == ""
    assert setup.ready_at is not None


@pytest.mark.django_db
def test_ses_failure_keeps_the_account_not_ready(
    tenant: Tenant, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.DELIVERY_PROVIDER = "ses"

    def unreachable(self: SesProvider, setup: ProviderSetup) -> None:
        raise ProviderError("We could not reach Amazon SES.", code="EndpointConnectionError", detail="refused")

    monkeypatch.setattr(SesProvider, "ensure_account", unreachable)
    with pytest.raises(ProviderError) as caught:
        ensure_setup(tenant.account_a)
    assert caught.value.user_message == "We could not reach Amazon SES."
    setup = ProviderSetup.objects.get(sending_account=tenant.account_a)
    assert setup.ready_at is None
    assert setup.last_error == "We could not reach Amazon SES. (EndpointConnectionError: refused)"


@pytest.mark.django_db
def test_an_account_keeps_the_provider_it_was_set_up_with(tenant: Tenant, settings: Any) -> None:
    setup = ensure_setup(tenant.account_a)
    settings.DELIVERY_PROVIDER = "ses"
    assert isinstance(provider_for(setup), SandboxProvider)
    assert isinstance(get_provider(), SesProvider)
    assert ensure_setup(tenant.account_a).provider == ProviderSetup.Provider.SANDBOX


def test_unknown_provider_name_is_refused() -> None:
    with pytest.raises(ValueError, match="Unknown delivery provider"):
        get_provider("carrier-pigeon")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("failed_before", [False, True], ids=["new account", "after a failed set-up"])
def test_concurrent_set_ups_of_one_account_set_it_up_once(monkeypatch: pytest.MonkeyPatch, failed_before: bool) -> None:
    # given: a slow provider, and 8 requests setting up the same account at the same moment
    account = SendingAccountFactory(organisation=OrganisationFactory(), name="Busy account")
    if failed_before:
        name = account_resource_name(account.pk)
        ProviderSetup.objects.create(
            sending_account=account, provider="sandbox", configuration_set=name, last_error="Throttled"
        )
    calls: list[int] = []
    lock = threading.Lock()

    def slow_ensure_account(self: SandboxProvider, setup: ProviderSetup) -> None:
        with lock:
            calls.append(setup.pk)
        time.sleep(0.3)

    monkeypatch.setattr(SandboxProvider, "ensure_account", slow_ensure_account)
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    results: list[int] = []
    errors: list[str] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            setup = ensure_setup(account)
            with lock:
                results.append(setup.pk)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            with lock:
                errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(threads_count)]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # then: one row, set up once, every caller got it
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert ProviderSetup.objects.filter(sending_account=account).count() == 1
    assert len(calls) == 1
    assert set(results) == {calls[0]}
    assert ProviderSetup.objects.get(sending_account=account).ready_at is not None
