"""Amazon SES through the SES v2 API (boto3 ``sesv2``).

Each sending account has its own configuration set (reputation metrics, its own suppression options,
the SNS event destination) and, where available, its own SES tenant; its domain identities and its
configuration set are associated with that tenant, and every message is sent with both.

Errors of boto3 become :class:`ProviderError` (and subclasses) through :func:`provider_error`.
Operations of several steps undo what they did when a later step fails (:func:`_all_or_nothing`), so a
failure never leaves half a set-up behind.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionClosedError, HTTPClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.utils.translation import gettext

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
    sanitise_tags,
)

if TYPE_CHECKING:
    from deliverability.models import ProviderSetup

logger = logging.getLogger(__name__)

# Every event type SES can publish: the portal's event processing decides what to keep.
EVENT_TYPES = [
    "SEND",
    "REJECT",
    "BOUNCE",
    "COMPLAINT",
    "DELIVERY",
    "OPEN",
    "CLICK",
    "RENDERING_FAILURE",
    "DELIVERY_DELAY",
    "SUBSCRIPTION",
]
SUPPRESSED_REASONS = ["BOUNCE", "COMPLAINT"]
EASY_DKIM_KEY_LENGTH = "RSA_2048_BIT"

# Error codes, grouped by what they mean for us. Moto answers some with the SES v1 names, hence both.
ALREADY_EXISTS = frozenset(
    {
        "AlreadyExistsException",
        "AlreadyExists",
        "ConfigurationSetAlreadyExists",
        "ConfigurationSetAlreadyExistsException",
        "EventDestinationAlreadyExists",
        "EventDestinationAlreadyExistsException",
    }
)
NOT_FOUND = frozenset(
    {"NotFoundException", "NotFound", "ConfigurationSetDoesNotExist", "ConfigurationSetDoesNotExistException"}
)
THROTTLING = frozenset(
    {"TooManyRequestsException", "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded"}
)
PAUSED = frozenset(
    {
        "AccountSendingPausedException",
        "SendingPausedException",
        "AccountSuspendedException",
        "ConfigurationSetSendingPausedException",
    }
)
REJECTED = frozenset({"MessageRejected", "MailFromDomainNotVerifiedException", "MailFromDomainNotVerified"})
ACCESS = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidSignatureException",
        "MissingAuthenticationToken",
        "IncompleteSignature",
        "OptInRequired",
    }
)
CONFLICT = frozenset({"ConcurrentModificationException", "ConflictException"})


def _unreachable_message() -> str:
    return gettext("We could not reach Amazon SES. Nothing was changed; please try again in a few minutes.")


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def provider_error(exc: Exception, *, sending: bool = False) -> ProviderError:
    """The :class:`ProviderError` for a boto3 exception, with a message in plain words.

    ``sending``: the error answered ``SendEmail``, where a limit means the daily quota (pause the
    campaign) and a bad request concerns this one message."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        detail = str(exc.response.get("Error", {}).get("Message", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in THROTTLING:
            # SES v1 wording for a used-up daily quota arrives as a throttling error.
            if sending and "daily message quota" in detail.lower():
                return SendingPaused(code=code, detail=detail)
            return Throttled(
                gettext("Amazon SES is receiving too many requests right now. We will try again shortly."),
                code=code,
                detail=detail,
            )
        if code in PAUSED or (sending and code == "LimitExceededException"):
            return SendingPaused(
                gettext(
                    "Amazon SES has paused sending (sending paused for the account or the daily quota used up). "
                    "Your messages are kept and go out when sending resumes."
                ),
                code=code,
                detail=detail,
            )
        if code in {"MailFromDomainNotVerifiedException", "MailFromDomainNotVerified"}:
            return MessageRejected(
                gettext(
                    "Amazon SES refused this message because the custom MAIL FROM domain of the sender's "
                    "domain is not verified yet."
                ),
                code=code,
                detail=detail,
            )
        if code in REJECTED or (sending and code == "BadRequestException"):
            return MessageRejected(
                gettext("Amazon SES refused this message: %(reason)s") % {"reason": detail or code},
                code=code,
                detail=detail,
            )
        if code in ACCESS:
            return ProviderError(_unreachable_message(), code=code, retryable=False, detail=detail)
        if code == "LimitExceededException":
            return ProviderError(
                gettext(
                    "A limit of the portal's Amazon SES account was reached (for example the number of domains "
                    "or configuration sets). Nothing was changed; please contact XES support."
                ),
                code=code,
                detail=detail,
            )
        if code in NOT_FOUND:
            return ProviderError(
                gettext(
                    "Amazon SES does not know something this step needs (the set-up of this sending account may "
                    "be incomplete). Nothing was changed; please try again or contact XES support."
                ),
                code=code,
                detail=detail,
            )
        if code in CONFLICT:
            return ProviderError(
                gettext("Amazon SES was busy changing the same settings. Nothing was changed; please try again."),
                code=code,
                retryable=True,
                detail=detail,
            )
        if status >= 500:
            return ProviderError(_unreachable_message(), code=code, retryable=True, detail=detail)
        return ProviderError(
            gettext("Amazon SES refused the request. Nothing was changed."), code=code, retryable=False, detail=detail
        )
    if sending and isinstance(exc, ReadTimeoutError | ConnectionClosedError):
        # The request went out and no answer came: SES may have taken the message. Sending it
        # again could deliver it twice, so the pipeline reconciles it from SES's events instead.
        return OutcomeUnknown(code=type(exc).__name__, detail=str(exc))
    if isinstance(exc, BotoCoreError):
        # Network trouble is worth another try; missing credentials or region are not.
        retryable = isinstance(exc, BotoConnectionError | HTTPClientError)
        return ProviderError(_unreachable_message(), code=type(exc).__name__, retryable=retryable, detail=str(exc))
    return ProviderError(detail=repr(exc))


def make_client(region: str) -> Any:
    """A ``sesv2`` client with short timeouts (web requests wait for it) and boto3's standard retries.

    Each client gets its own session: the default boto3 session is not safe to create from threads."""
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)
    return boto3.session.Session().client("sesv2", region_name=region, config=config)


def private_key_base64(private_key_pem: str) -> str:
    """A PEM private key as SES wants it for your own DKIM key: base64 of the DER key (PKCS #1),
    without the PEM armour and line breaks."""
    try:
        key = serialization.load_pem_private_key(private_key_pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm) as exc:
        raise ProviderError(
            gettext("The DKIM private key could not be read. Nothing was changed."), code="InvalidPrivateKey"
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ProviderError(gettext("The DKIM key must be an RSA key. Nothing was changed."), code="InvalidPrivateKey")
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    return base64.b64encode(der).decode("ascii")


Undo = list[tuple[str, Callable[[], object]]]


@contextmanager
def _all_or_nothing() -> Iterator[Undo]:
    """Collect undo steps while a multi-step operation runs; on an error run them newest first.

    Undo is best effort: a step that fails is logged (the XES team sees it) and the original error is
    raised, because that is what the user must read."""
    undo: Undo = []
    try:
        yield undo
    except Exception:
        for description, step in reversed(undo):
            try:
                step()
            except ProviderError as exc:
                logger.error("SES: could not undo %s: %s", description, exc.describe())
        raise


def _arn(tenant_arn: str, resource: str) -> str:
    """The ARN of ``resource`` (``identity/example.com``) in the partition, region and AWS account of a
    tenant ARN (``arn:aws:ses:eu-central-1:123456789012:tenant/name/id``)."""
    _arn_word, partition, service, region, account, _rest = tenant_arn.split(":", 5)
    return f"arn:{partition}:{service}:{region}:{account}:{resource}"


class SesProvider(DeliveryProvider):
    """Amazon SES v2. ``client`` may be given (tests wrap one in botocore's Stubber); by default one is
    made for ``region`` (``settings.AWS_REGION``) and ``send_raw`` uses :class:`FastSender`. Tenants
    are used unless ``settings.SES_TENANTS`` is false or the installed botocore does not know them."""

    name = "ses"

    def __init__(
        self,
        *,
        client: Any = None,
        region: str | None = None,
        tenants: bool | None = None,
        fast_send: bool | None = None,
    ) -> None:
        super().__init__(region)
        self._client = client
        # Sending takes the fast path unless a client was given (tests stub that client's calls).
        self.fast_send = client is None if fast_send is None else fast_send
        self._sender: FastSender | None = None
        self._sender_lock = threading.Lock()
        self.uses_tenants = bool(getattr(settings, "SES_TENANTS", True) if tenants is None else tenants)
        self._tenant_arns: dict[str, str] = {}

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client(self.region)
        return self._client

    def _call(
        self, operation: str, *, ok: frozenset[str] = frozenset(), sending: bool = False, **params: Any
    ) -> dict[str, Any] | None:
        """Call one SES operation; ``None`` when SES answered with one of the ``ok`` error codes
        (``ALREADY_EXISTS`` for idempotent creation, ``NOT_FOUND`` for idempotent deletion)."""
        try:
            response: dict[str, Any] = getattr(self.client, operation)(**params)
        except ClientError as exc:
            if error_code(exc) in ok:
                return None
            error = provider_error(exc, sending=sending)
            logger.warning("SES %s failed: %s", operation, error.describe())
            raise error from exc
        except BotoCoreError as exc:
            error = provider_error(exc, sending=sending)
            logger.warning("SES %s failed: %s", operation, error.describe())
            raise error from exc
        return response

    def _require(self, operation: str, *, sending: bool = False, **params: Any) -> dict[str, Any]:
        response = self._call(operation, sending=sending, **params)
        assert response is not None  # no error code is accepted, so there is always an answer
        return response

    # Tenants ---------------------------------------------------------------------------------------

    def _tenants_available(self) -> bool:
        return self.uses_tenants and "CreateTenant" in self.client.meta.service_model.operation_names

    def _tenant_arn(self, tenant: str) -> str | None:
        """The ARN of ``tenant`` (``None`` when it does not exist); it also tells us the AWS account id."""
        if tenant not in self._tenant_arns:
            response = self._call("get_tenant", ok=NOT_FOUND, TenantName=tenant)
            if response is None:
                return None
            self._tenant_arns[tenant] = str(response["Tenant"]["TenantArn"])
        return self._tenant_arns[tenant]

    def _require_tenant_arn(self, tenant: str) -> str:
        arn = self._tenant_arn(tenant)
        if arn is None:
            raise ProviderError(
                gettext(
                    "The Amazon SES set-up of this sending account is incomplete. Nothing was changed; "
                    "please try again or contact XES support."
                ),
                code="NotFoundException",
                detail=f"tenant {tenant} does not exist",
            )
        return arn

    def _ensure_tenant(self, setup: ProviderSetup, undo: Undo) -> str:
        response = self._call(
            "create_tenant",
            ok=ALREADY_EXISTS,
            TenantName=setup.tenant,
            SuppressionAttributes={"SuppressedReasons": SUPPRESSED_REASONS, "SuppressionScope": "TENANT"},
            Tags=[{"Key": "xes-sending-account", "Value": str(setup.sending_account_id)}],
        )
        if response is None:
            return self._require_tenant_arn(setup.tenant)
        self._tenant_arns[setup.tenant] = str(response["TenantArn"])
        undo.append(("tenant", partial(self._delete_tenant, setup.tenant)))
        return self._tenant_arns[setup.tenant]

    def _delete_tenant(self, tenant: str) -> None:
        self._tenant_arns.pop(tenant, None)
        self._call("delete_tenant", ok=NOT_FOUND, TenantName=tenant)

    def _associate(self, tenant: str, resource_arn: str, undo: Undo) -> None:
        response = self._call(
            "create_tenant_resource_association", ok=ALREADY_EXISTS, TenantName=tenant, ResourceArn=resource_arn
        )
        if response is not None:
            undo.append(
                (
                    f"tenant association of {resource_arn}",
                    partial(
                        self._call,
                        "delete_tenant_resource_association",
                        ok=NOT_FOUND,
                        TenantName=tenant,
                        ResourceArn=resource_arn,
                    ),
                )
            )

    # Account set-up --------------------------------------------------------------------------------

    def ensure_account(self, setup: ProviderSetup) -> None:
        """1. the tenant (its own suppression list), 2. the configuration set, 3. the configuration set's
        association with the tenant, 4. the SNS event destination (when a topic is configured)."""
        if setup.tenant and not self._tenants_available():
            setup.tenant = ""
        with _all_or_nothing() as undo:
            tenant_arn = self._ensure_tenant(setup, undo) if setup.tenant else ""
            suppression: dict[str, Any] = {"SuppressedReasons": SUPPRESSED_REASONS}
            if setup.tenant:
                suppression["SuppressionScope"] = "TENANT"
            created = self._call(
                "create_configuration_set",
                ok=ALREADY_EXISTS,
                ConfigurationSetName=setup.configuration_set,
                ReputationOptions={"ReputationMetricsEnabled": True},
                SendingOptions={"SendingEnabled": True},
                SuppressionOptions=suppression,
                Tags=[{"Key": "xes-sending-account", "Value": str(setup.sending_account_id)}],
            )
            if created is not None:
                undo.append(
                    (
                        "configuration set",
                        partial(
                            self._call,
                            "delete_configuration_set",
                            ok=NOT_FOUND,
                            ConfigurationSetName=setup.configuration_set,
                        ),
                    )
                )
            if tenant_arn:
                self._associate(setup.tenant, _arn(tenant_arn, f"configuration-set/{setup.configuration_set}"), undo)
            if settings.SES_EVENT_TOPIC_ARN:
                self._ensure_event_destination(setup.configuration_set, settings.SES_EVENT_TOPIC_ARN)

    def _ensure_event_destination(self, configuration_set: str, topic_arn: str) -> None:
        """All event types to the SNS topic; an existing destination is updated (the topic may have changed)."""
        params: dict[str, Any] = {
            "ConfigurationSetName": configuration_set,
            "EventDestinationName": f"{settings.SES_NAME_PREFIX}-sns",
            "EventDestination": {
                "Enabled": True,
                "MatchingEventTypes": EVENT_TYPES,
                "SnsDestination": {"TopicArn": topic_arn},
            },
        }
        if self._call("create_configuration_set_event_destination", ok=ALREADY_EXISTS, **params) is None:
            self._call("update_configuration_set_event_destination", **params)

    # Domain identities -----------------------------------------------------------------------------

    def create_domain_identity(
        self, setup: ProviderSetup, domain: str, byo_dkim: tuple[str, str] | None = None
    ) -> DkimSetup:
        """A new identity is created with its DKIM and configuration set in one call, then associated
        with the tenant. An existing one (added before, or by another sending account) is brought in
        line: configuration set, tenant, then DKIM last because a replaced key cannot be put back."""
        signing: dict[str, str] = (
            {"DomainSigningSelector": byo_dkim[0], "DomainSigningPrivateKey": private_key_base64(byo_dkim[1])}
            if byo_dkim
            else {"NextSigningKeyLength": EASY_DKIM_KEY_LENGTH}
        )
        with _all_or_nothing() as undo:
            created = self._call(
                "create_email_identity",
                ok=ALREADY_EXISTS,
                EmailIdentity=domain,
                DkimSigningAttributes=signing,
                ConfigurationSetName=setup.configuration_set,
            )
            current: dict[str, Any] = {}
            if created is not None:
                undo.append(
                    ("identity", partial(self._call, "delete_email_identity", ok=NOT_FOUND, EmailIdentity=domain))
                )
            else:
                current = self._require("get_email_identity", EmailIdentity=domain)
                previous_set = current.get("ConfigurationSetName")
                if previous_set != setup.configuration_set:
                    self._set_identity_configuration_set(domain, setup.configuration_set)
                    undo.append(
                        (
                            "configuration set of the identity",
                            partial(self._set_identity_configuration_set, domain, previous_set),
                        )
                    )
            if setup.tenant:
                tenant_arn = self._require_tenant_arn(setup.tenant)
                self._associate(setup.tenant, _arn(tenant_arn, f"identity/{domain}"), undo)
            dkim = (
                created.get("DkimAttributes", {}) if created is not None else self._align_dkim(domain, current, signing)
            )
        return DkimSetup(tokens=[str(t) for t in dkim.get("Tokens") or []], status=str(dkim.get("Status") or "PENDING"))

    def _set_identity_configuration_set(self, domain: str, configuration_set: str | None) -> None:
        params: dict[str, Any] = {"EmailIdentity": domain}
        if configuration_set:
            params["ConfigurationSetName"] = configuration_set
        self._call("put_email_identity_configuration_set_attributes", **params)

    def _align_dkim(self, domain: str, current: dict[str, Any], signing: dict[str, str]) -> dict[str, Any]:
        """Switch an existing identity to the requested DKIM; your own key is always (re)sent, since
        SES does not tell which key it holds."""
        dkim: dict[str, Any] = current.get("DkimAttributes") or {}
        wants_own_key = "DomainSigningPrivateKey" in signing
        if not wants_own_key and dkim.get("SigningAttributesOrigin") != "EXTERNAL":
            return dkim
        response = self._require(
            "put_email_identity_dkim_signing_attributes",
            EmailIdentity=domain,
            SigningAttributesOrigin="EXTERNAL" if wants_own_key else "AWS_SES",
            SigningAttributes=signing,
        )
        return {"Tokens": response.get("DkimTokens") or [], "Status": response.get("DkimStatus")}

    def delete_domain_identity(self, setup: ProviderSetup, domain: str) -> None:
        """Removes the tenant association, then the identity. SES identities belong to the whole AWS
        account: the caller deletes only when no other sending account uses the same domain."""
        if setup.tenant:
            tenant_arn = self._tenant_arn(setup.tenant)
            if tenant_arn:
                self._call(
                    "delete_tenant_resource_association",
                    ok=NOT_FOUND,
                    TenantName=setup.tenant,
                    ResourceArn=_arn(tenant_arn, f"identity/{domain}"),
                )
        self._call("delete_email_identity", ok=NOT_FOUND, EmailIdentity=domain)

    def identity_state(self, domain: str) -> IdentityState:
        response = self._call("get_email_identity", ok=NOT_FOUND, EmailIdentity=domain)
        if response is None:
            return IdentityState(
                exists=False, verified_for_sending=False, dkim_status="NOT_STARTED", mail_from_status=""
            )
        dkim = response.get("DkimAttributes") or {}
        mail_from = response.get("MailFromAttributes") or {}
        return IdentityState(
            exists=True,
            verified_for_sending=bool(response.get("VerifiedForSendingStatus")),
            dkim_status=str(dkim.get("Status") or "NOT_STARTED"),
            mail_from_status=str(mail_from.get("MailFromDomainStatus") or ""),
        )

    def set_mail_from(self, setup: ProviderSetup, domain: str, mail_from_domain: str | None) -> None:
        """Custom MAIL FROM; while its MX record is missing SES falls back to its own domain instead of
        refusing mail (``USE_DEFAULT_VALUE``)."""
        params: dict[str, Any] = {"EmailIdentity": domain, "BehaviorOnMxFailure": "USE_DEFAULT_VALUE"}
        if mail_from_domain:
            params["MailFromDomain"] = mail_from_domain
        self._call("put_email_identity_mail_from_attributes", **params)

    # Dedicated IPs ---------------------------------------------------------------------------------

    def ensure_ip_pool(self, pool_name: str) -> None:
        # STANDARD: the XES team assigns the IPs and the portal runs the warm-up (not SES-managed).
        self._call("create_dedicated_ip_pool", ok=ALREADY_EXISTS, PoolName=pool_name, ScalingMode="STANDARD")

    def assign_dedicated_ip(self, pool_name: str, ip: str) -> None:
        self._call("put_dedicated_ip_in_pool", Ip=ip, DestinationPoolName=pool_name)

    def use_ip_pool(self, setup: ProviderSetup, pool_name: str | None) -> None:
        params: dict[str, Any] = {"ConfigurationSetName": setup.configuration_set}
        if pool_name:
            params["SendingPoolName"] = pool_name
        self._call("put_configuration_set_delivery_options", **params)

    # Sending ---------------------------------------------------------------------------------------

    def quota(self) -> Quota:
        response = self._require("get_account")
        send_quota = response.get("SendQuota") or {}
        return Quota(
            max_24_hour_send=int(send_quota.get("Max24HourSend", 0)),  # -1: unlimited
            max_send_rate=float(send_quota.get("MaxSendRate", 0.0)),
            sent_last_24_hours=int(send_quota.get("SentLast24Hours", 0)),
            sending_enabled=bool(response.get("SendingEnabled")),
        )

    def send_raw(
        self,
        setup: ProviderSetup,
        raw: bytes,
        *,
        from_address: str,
        recipients: list[str],
        tags: dict[str, str],
    ) -> str:
        """SendEmail with the raw message; safe to call from several threads at once.

        A client given to the constructor (tests wrap one in botocore's Stubber) is used for the call;
        otherwise the call goes through :class:`FastSender` (one signed request on a pooled
        connection), which costs about a third of boto3's client CPU per message."""
        params = self._send_params(setup, raw, from_address=from_address, recipients=recipients, tags=tags)
        if not self.fast_send:
            response = self._require("send_email", sending=True, **params)
            return str(response["MessageId"])
        return self._fast_sender().send(params)

    def prepare_send(
        self,
        setup: ProviderSetup,
        raw: bytes,
        *,
        from_address: str,
        recipients: list[str],
        tags: dict[str, str],
    ) -> Callable[[], str]:
        """The request encoded and signed now, sent when called: the SigV4 signature stays valid for
        five minutes, far longer than a send slot is booked ahead."""
        if not self.fast_send:
            return super().prepare_send(setup, raw, from_address=from_address, recipients=recipients, tags=tags)
        params = self._send_params(setup, raw, from_address=from_address, recipients=recipients, tags=tags)
        sender = self._fast_sender()
        try:
            prepared = sender.request(params)
        except BotoCoreError as exc:
            error = provider_error(exc, sending=True)
            logger.warning("SES send_email failed: %s", error.describe())
            raise error from exc
        return partial(sender.send_prepared, prepared)

    def _send_params(
        self, setup: ProviderSetup, raw: bytes, *, from_address: str, recipients: list[str], tags: dict[str, str]
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "FromEmailAddress": from_address,
            "Destination": {"ToAddresses": list(recipients)},
            "Content": {"Raw": {"Data": raw}},
            "ConfigurationSetName": setup.configuration_set,
            "EmailTags": [{"Name": name, "Value": value} for name, value in sanitise_tags(tags).items()],
        }
        if setup.tenant:
            params["TenantName"] = setup.tenant
        return params

    def _fast_sender(self) -> FastSender:
        if self._sender is None:
            with self._sender_lock:  # threads of one batch share one connection pool
                if self._sender is None:
                    self._sender = FastSender(self.client)
        return self._sender


# The hot send path --------------------------------------------------------------------------------

SEND_EMAIL_PATH = "/v2/email/outbound-emails"  # SES v2 SendEmail: POST, REST-JSON
SIGNING_NAME = "ses"  # the sesv2 service model's signingName
SEND_CONNECT_TIMEOUT = 5
SEND_READ_TIMEOUT: float = 30


class FastSender:
    """SES v2 SendEmail without boto3's per-call machinery: the JSON body is written directly,
    signed with botocore's SigV4 signer and sent over botocore's pooled urllib3 session.

    boto3 validates and serialises parameters against the service model, runs a dozen event
    handlers and a retry handler per call (about 1.3 ms of CPU); this path costs about 0.4 ms. It keeps
    what matters: the same endpoint (``client.meta.endpoint_url``, so ``AWS_ENDPOINT_URL_SESV2`` works),
    region and credential chain (refreshable credentials are re-read per request), the client's
    ``before-send`` event (moto answers through it), and errors parsed by botocore's REST-JSON parser
    into the same ``ClientError`` that :func:`provider_error` maps.

    No automatic retries: a throttled message goes back to the sending pipeline, which backs off for
    every worker at once, and a request that may have reached SES is never sent a second time here.
    """

    def __init__(self, client: Any, max_connections: int = 64) -> None:
        import urllib3
        from botocore.httpsession import get_cert_path
        from botocore.parsers import create_parser

        self.events = client.meta.events
        self.region = client.meta.region_name
        self.url = client.meta.endpoint_url.rstrip("/") + SEND_EMAIL_PATH
        self.credentials = boto3.session.Session().get_credentials()
        # Plain urllib3 rather than botocore's session: botocore writes headers and body in separate
        # packets, which costs CPU and, with delayed ACKs, up to 40 ms per request.
        self.http = urllib3.PoolManager(
            num_pools=4,
            maxsize=max_connections,
            retries=False,
            timeout=urllib3.Timeout(connect=SEND_CONNECT_TIMEOUT, read=SEND_READ_TIMEOUT),
            ca_certs=get_cert_path(True),
        )
        self.output_shape = client.meta.service_model.operation_model("SendEmail").output_shape
        self.parser = create_parser("rest-json")
        self.event_name = f"before-send.{client.meta.service_model.service_id.hyphenize()}.SendEmail"

    def request(self, params: dict[str, Any]) -> Any:
        """The signed, prepared HTTP request for SendEmail with boto3-style ``params``."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.exceptions import NoCredentialsError

        body = dict(params)
        content = body["Content"]["Raw"]
        body["Content"] = {"Raw": {"Data": base64.b64encode(content["Data"]).decode("ascii")}}
        request = AWSRequest(
            method="POST",
            url=self.url,
            data=json.dumps(body, separators=(",", ":")).encode(),
            headers={"Content-Type": "application/json"},
        )
        if self.credentials is None:
            raise NoCredentialsError()
        SigV4Auth(self.credentials.get_frozen_credentials(), SIGNING_NAME, self.region).add_auth(request)
        return request.prepare()

    def send(self, params: dict[str, Any]) -> str:
        """Send; the SES message id, or the :class:`ProviderError` that ``send_email`` would raise."""
        try:
            prepared = self.request(params)
        except BotoCoreError as exc:
            error = provider_error(exc, sending=True)
            logger.warning("SES send_email failed: %s", error.describe())
            raise error from exc
        return self.send_prepared(prepared)

    def send_prepared(self, prepared: Any) -> str:
        """Send a request made by :meth:`request`; the SES message id, or the :class:`ProviderError`."""
        try:
            _handler, stubbed = self.events.emit_until_response(self.event_name, request=prepared)
            if stubbed is not None:
                status, headers, content = stubbed.status_code, stubbed.headers, stubbed.content
            else:
                status, headers, content = self._post(prepared)
        except BotoCoreError as exc:
            error = provider_error(exc, sending=True)
            logger.warning("SES send_email failed: %s", error.describe())
            raise error from exc
        if status == 200:
            try:
                return str(json.loads(content)["MessageId"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ProviderError(
                    _unreachable_message(), code="InvalidResponse", retryable=False, detail=repr(content[:200])
                ) from exc
        parsed = self.parser.parse({"status_code": status, "headers": headers, "body": content}, self.output_shape)
        client_error = ClientError(parsed, "SendEmail")
        error = provider_error(client_error, sending=True)
        logger.warning("SES send_email failed: %s", error.describe())
        raise error from client_error

    def _post(self, prepared: Any) -> tuple[int, Any, bytes]:
        """POST over the pool; urllib3's network errors become botocore's (as boto3 would raise)."""
        import urllib3
        from botocore.awsrequest import HeadersDict
        from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

        try:
            response = self.http.request(
                "POST", prepared.url, body=prepared.body, headers=dict(prepared.headers.items()), preload_content=True
            )
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise ReadTimeoutError(endpoint_url=prepared.url, error=exc) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise EndpointConnectionError(endpoint_url=prepared.url, error=exc) from exc
        return response.status, HeadersDict(response.headers.items()), response.data
