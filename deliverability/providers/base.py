"""The delivery-provider interface (DESIGN.md, "Delivery providers"): what the portal asks of Amazon SES
or of the local sandbox, and the errors it gets back.

Every provider method raises :class:`ProviderError` (or a subclass) and nothing else for problems on
the provider's side, with a ``user_message`` in plain words that a view can show as it is. The sending
engine tells the subclasses apart:

- :class:`SendingPaused`: pause the campaign and try again later, do not fail the messages;
- :class:`Throttled`: back off and retry the same message;
- :class:`MessageRejected`: this message can never be sent (the reason is kept);
- any other :class:`ProviderError`: ``retryable`` says whether the same call may work later.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils.translation import gettext

if TYPE_CHECKING:
    from deliverability.models import ProviderSetup

# SES message tags (names and values): ASCII letters, digits, "_" and "-", at most 256 characters
# (SES API reference, MessageTag). Anything else makes SendEmail fail with BadRequestException.
TAG_MAX_LENGTH = 256
_TAG_FORBIDDEN = re.compile(r"[^A-Za-z0-9_-]")


class ProviderError(Exception):
    """A provider call failed.

    ``user_message``: clear, translated text for the UI; ``code``: the provider's error code (empty
    when the provider was not reached); ``retryable``: whether the same call may succeed later;
    ``detail``: the provider's own (English, technical) explanation, for logs and the XES team.
    """

    default_retryable = False

    def __init__(
        self,
        user_message: str | None = None,
        *,
        code: str = "",
        retryable: bool | None = None,
        detail: str = "",
    ) -> None:
        self.user_message = str(user_message) if user_message else self.default_user_message()
        self.code = code
        self.retryable = self.default_retryable if retryable is None else retryable
        self.detail = detail
        super().__init__(self.user_message)

    @classmethod
    def default_user_message(cls) -> str:
        return gettext("The delivery provider could not complete the request. Nothing was changed; please try again.")

    def describe(self) -> str:
        """One line for ``ProviderSetup.last_error`` and logs: the user message plus the technical cause."""
        cause = ": ".join(part for part in (self.code, self.detail) if part)
        return f"{self.user_message} ({cause})" if cause else self.user_message


class Throttled(ProviderError):
    """Too many requests right now: the sending engine backs off and retries."""

    default_retryable = True

    @classmethod
    def default_user_message(cls) -> str:
        return gettext("The delivery provider is receiving too many requests right now. We will try again shortly.")


class MessageRejected(ProviderError):
    """The provider refused this message for good (``reason`` says why); other messages may still go."""

    @classmethod
    def default_user_message(cls) -> str:
        return gettext("The delivery provider refused this message.")

    @property
    def reason(self) -> str:
        return self.detail or self.user_message


class OutcomeUnknown(ProviderError):
    """The request may have reached the provider but no answer came (a read timeout, a connection
    closed mid-answer): whether the message was accepted is unknown. The sending engine never sends
    it again blindly; it is reconciled from the provider's events, like a send whose worker died."""

    @classmethod
    def default_user_message(cls) -> str:
        return gettext(
            "The delivery provider did not answer in time. Whether it took the message is checked "
            "against its events; it is not sent a second time."
        )


class SendingPaused(ProviderError):
    """Sending is paused for the whole account (paused, suspended or the daily quota used up).

    Retryable in the sense that the same message will go out once sending resumes: the campaign is
    paused, not failed."""

    default_retryable = True

    @classmethod
    def default_user_message(cls) -> str:
        return gettext(
            "Sending is paused by the delivery provider (sending paused or the daily quota used up). "
            "Your messages are kept and go out when sending resumes."
        )


@dataclass(frozen=True)
class DkimSetup:
    """DKIM of a domain identity: Easy DKIM ``tokens`` (one CNAME each; empty for your own key) and the
    provider's DKIM status (``PENDING``, ``SUCCESS``, ``FAILED``, ``TEMPORARY_FAILURE``, ``NOT_STARTED``)."""

    tokens: list[str]
    status: str


@dataclass(frozen=True)
class IdentityState:
    """What the provider knows about a domain identity (statuses use the SES words)."""

    exists: bool
    verified_for_sending: bool
    dkim_status: str
    mail_from_status: str


@dataclass(frozen=True)
class Quota:
    """The provider's sending limits for the whole provider account (shared by all sending accounts)."""

    max_24_hour_send: int
    max_send_rate: float
    sent_last_24_hours: int
    sending_enabled: bool


def sanitise_tag(text: str) -> str:
    """``text`` as a valid SES message-tag name or value: forbidden characters become ``_``."""
    return _TAG_FORBIDDEN.sub("_", str(text))[:TAG_MAX_LENGTH]


def sanitise_tags(tags: dict[str, str]) -> dict[str, str]:
    """Message tags that SES accepts; a tag whose name or value ends up empty is dropped (SES requires both)."""
    clean: dict[str, str] = {}
    for name, value in tags.items():
        clean_name, clean_value = sanitise_tag(name), sanitise_tag(value)
        if clean_name and clean_value:
            clean[clean_name] = clean_value
    return clean


def account_resource_name(sending_account_id: int) -> str:
    """The name of a sending account's configuration set, tenant and dedicated IP pool at the provider.

    The prefix keeps several portals (production, staging) apart in one AWS account."""
    return f"{settings.SES_NAME_PREFIX}-acct-{sending_account_id}"


class DeliveryProvider(ABC):
    """One delivery provider. Methods are idempotent unless said otherwise and raise only
    :class:`ProviderError` (and subclasses) for problems on the provider's side.

    The DNS records are those of Amazon SES for both implementations, so that a domain set up against
    the sandbox keeps working when the portal switches to SES.
    """

    name: str
    spf_include: str = "amazonses.com"
    # Whether each sending account gets its own provider tenant (set in ``ProviderSetup.tenant``).
    uses_tenants: bool = False

    def __init__(self, region: str | None = None) -> None:
        self.region = region or settings.AWS_REGION

    def dkim_cname(self, domain: str, token: str) -> tuple[str, str]:
        """The Easy DKIM CNAME record for one token: (record name, target)."""
        return f"{token}._domainkey.{domain}", f"{token}.dkim.amazonses.com"

    def mail_from_mx(self) -> str:
        """The MX host of a custom MAIL FROM domain (priority 10)."""
        return f"feedback-smtp.{self.region}.amazonses.com"

    @abstractmethod
    def ensure_account(self, setup: ProviderSetup) -> None:
        """Create what one sending account needs at the provider: its configuration set (reputation
        metrics on, its own suppression options), the event destination, and its tenant where available.
        May clear ``setup.tenant`` (not saved) when the provider has no tenants."""

    @abstractmethod
    def create_domain_identity(
        self, setup: ProviderSetup, domain: str, byo_dkim: tuple[str, str] | None = None
    ) -> DkimSetup:
        """Create (or bring in line) the identity of ``domain``, associated with the account's
        configuration set and tenant. ``byo_dkim`` is (selector, private key PEM) for your own DKIM key,
        otherwise Easy DKIM. On failure, whatever this call did is undone before the error is raised."""

    @abstractmethod
    def delete_domain_identity(self, setup: ProviderSetup, domain: str) -> None:
        """Remove the identity of ``domain``; an identity that is already gone is fine."""

    @abstractmethod
    def identity_state(self, domain: str) -> IdentityState:
        """The provider's view of ``domain`` (``exists=False`` when it has no such identity)."""

    @abstractmethod
    def set_mail_from(self, setup: ProviderSetup, domain: str, mail_from_domain: str | None) -> None:
        """Use ``mail_from_domain`` as custom MAIL FROM for ``domain`` (``None``: back to the provider's)."""

    @abstractmethod
    def ensure_ip_pool(self, pool_name: str) -> None:
        """Create the dedicated IP pool ``pool_name`` (standard, managed by us) if it does not exist."""

    @abstractmethod
    def assign_dedicated_ip(self, pool_name: str, ip: str) -> None:
        """Move the dedicated IP ``ip`` (already leased in the provider account) into ``pool_name``."""

    @abstractmethod
    def use_ip_pool(self, setup: ProviderSetup, pool_name: str | None) -> None:
        """Send the account's mail through ``pool_name`` (``None``: the shared pool)."""

    @abstractmethod
    def quota(self) -> Quota:
        """The sending quota of the provider account."""

    @abstractmethod
    def send_raw(
        self,
        setup: ProviderSetup,
        raw: bytes,
        *,
        from_address: str,
        recipients: list[str],
        tags: dict[str, str],
    ) -> str:
        """Send one MIME message to ``recipients`` (the envelope, not read from the headers) through the
        account's configuration set; ``tags`` are sanitised into message tags. Returns the provider's
        message id. Not idempotent: the sending engine's idempotency key prevents double sends."""

    def prepare_send(
        self,
        setup: ProviderSetup,
        raw: bytes,
        *,
        from_address: str,
        recipients: list[str],
        tags: dict[str, str],
    ) -> Callable[[], str]:
        """Do the work of :meth:`send_raw` that can be done before the message's send slot (encoding,
        signing) and return the call that sends it, so that the slot is used at its time. The
        returned call behaves like ``send_raw``; by default it is ``send_raw`` itself."""
        return partial(self.send_raw, setup, raw, from_address=from_address, recipients=recipients, tags=tags)
