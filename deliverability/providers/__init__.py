"""Delivery providers (DESIGN.md): the interface (:mod:`.base`), Amazon SES (:mod:`.ses`) and the local
sandbox (:mod:`.sandbox`), and the per-sending-account set-up that connects an account to its provider.

Callers use :func:`ensure_setup` once per sending account and :func:`provider_for` afterwards, so an
account keeps the provider it was set up with even if ``settings.DELIVERY_PROVIDER`` changes later.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import SendingAccount
from deliverability.models import ProviderSetup
from deliverability.providers.base import (
    DeliveryProvider,
    DkimSetup,
    IdentityState,
    MessageRejected,
    OutcomeUnknown,
    ProviderError,
    Quota,
    SendingPaused,
    Throttled,
    account_resource_name,
    sanitise_tags,
)

__all__ = [
    "DeliveryProvider",
    "DkimSetup",
    "IdentityState",
    "MessageRejected",
    "OutcomeUnknown",
    "ProviderError",
    "Quota",
    "SendingPaused",
    "Throttled",
    "account_resource_name",
    "ensure_setup",
    "get_provider",
    "provider_for",
    "sanitise_tags",
]


def get_provider(name: str | None = None) -> DeliveryProvider:
    """A provider by name (``settings.DELIVERY_PROVIDER`` by default). Cheap: the SES client is made on
    first use, and boto3 is imported only when SES is asked for."""
    name = name or settings.DELIVERY_PROVIDER
    if name == ProviderSetup.Provider.SES:
        from deliverability.providers.ses import SesProvider

        return SesProvider()
    if name == ProviderSetup.Provider.SANDBOX:
        from deliverability.providers.sandbox import SandboxProvider

        return SandboxProvider()
    raise ValueError(f"Unknown delivery provider {name!r}.")


def provider_for(setup: ProviderSetup) -> DeliveryProvider:
    """The provider that ``setup`` was made with."""
    return get_provider(setup.provider)


def ensure_setup(account: SendingAccount) -> ProviderSetup:
    """The account's :class:`ProviderSetup`, created at the provider if it is not ready yet.

    1. Get or create the row under a row lock (``SELECT ... FOR UPDATE``; the one-to-one column makes a
       concurrent creation fail and re-read), so two requests never set up the same account at once.
    2. When not ready, let the provider create the configuration set (and tenant); on success record
       ``ready_at``, on :class:`ProviderError` record ``last_error`` and re-raise it.

    The lock is held during the provider calls on purpose: a second caller waits and then finds the
    account ready instead of creating the same resources again.
    """
    failure: ProviderError | None = None
    with transaction.atomic():
        default = get_provider()
        name = account_resource_name(account.pk)
        setup, _created = ProviderSetup.objects.select_for_update().get_or_create(
            sending_account=account,
            defaults={
                "provider": default.name,
                "configuration_set": name,
                "tenant": name if default.uses_tenants else "",
            },
        )
        if setup.ready_at is not None:
            return setup
        try:
            provider_for(setup).ensure_account(setup)
        except ProviderError as exc:
            failure = exc
            setup.last_error = exc.describe()
            setup.save(update_fields=["last_error"])
        else:
            setup.ready_at = timezone.now()
            setup.last_error = ""
            setup.save(update_fields=["tenant", "ready_at", "last_error"])
    if failure is not None:
        raise failure
    return setup
