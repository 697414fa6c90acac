"""The Amazon SES provider: the right SES v2 calls with the right parameters, idempotency, clear errors,
and nothing left half-way when a later step fails.

Operations that moto implements run against moto's ``mock_aws``; the others (tenants, event
destinations, DKIM and MAIL FROM attributes, dedicated IPs in pools, the account quota) run against
botocore's ``Stubber`` on a real client, which checks every call's parameters against the SES v2 API
model and against the ``expected_params`` of the test.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.stub import Stubber
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sesv2.models import sesv2_backends

from deliverability.models import ProviderSetup
from deliverability.providers import MessageRejected, ProviderError, SendingPaused, Throttled
from deliverability.providers.ses import EVENT_TYPES, SesProvider, private_key_base64

REGION = "eu-central-1"
AWS_ACCOUNT = "123456789012"
NAME = "xes-acct-7"
TENANT_ARN = f"arn:aws:ses:{REGION}:{AWS_ACCOUNT}:tenant/{NAME}/tn-0123456789abcdef"
CONFIG_SET_ARN = f"arn:aws:ses:{REGION}:{AWS_ACCOUNT}:configuration-set/{NAME}"
DOMAIN = "alpha.example"
IDENTITY_ARN = f"arn:aws:ses:{REGION}:{AWS_ACCOUNT}:identity/{DOMAIN}"
TOKENS = ["a" * 32, "b" * 32, "c" * 32]
TOPIC = f"arn:aws:sns:{REGION}:{AWS_ACCOUNT}:xes-events"
UNREACHABLE = "We could not reach Amazon SES. Nothing was changed; please try again in a few minutes."


def make_setup(*, tenant: str = NAME) -> ProviderSetup:
    """An unsaved set-up: the SES provider only reads its names and the account id."""
    return ProviderSetup(sending_account_id=7, provider="ses", configuration_set=NAME, tenant=tenant)


def raw_message(subject: str = "Hello") -> bytes:
    msg = EmailMessage()
    msg["From"] = "News <news@alpha.example>"
    msg["To"] = "reader@example.net"
    msg["Subject"] = subject
    msg.set_content("Hi!")
    return msg.as_bytes()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def key_pem(rsa_key: rsa.RSAPrivateKey) -> str:
    return rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """Never the developer's real AWS account; no event topic unless a test sets one."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    settings.AWS_REGION = REGION
    settings.SES_EVENT_TOPIC_ARN = ""
    settings.SES_NAME_PREFIX = "xes"


@pytest.fixture
def moto_ses() -> Iterator[tuple[SesProvider, Any]]:
    """The provider (without tenants, which moto lacks) and a plain client, both talking to moto."""
    with mock_aws():
        yield SesProvider(region=REGION, tenants=False), boto3.client("sesv2", region_name=REGION)


def moto_backend() -> Any:
    return sesv2_backends[DEFAULT_ACCOUNT_ID][REGION].core_backend


@pytest.fixture
def stubbed() -> Iterator[tuple[SesProvider, Stubber]]:
    """The provider on a real client whose calls botocore's Stubber answers; every queued call must
    have happened by the end of the test, in order, with the expected parameters."""
    client = boto3.session.Session().client("sesv2", region_name=REGION)
    with Stubber(client) as stubber:
        yield SesProvider(client=client, region=REGION, tenants=True), stubber
        stubber.assert_no_pending_responses()


def error(
    stubber: Stubber, method: str, code: str, params: dict[str, Any], *, status: int = 400, msg: str = ""
) -> None:
    stubber.add_client_error(
        method, service_error_code=code, service_message=msg or code, http_status_code=status, expected_params=params
    )


# --- moto ----------------------------------------------------------------------------------------


def test_ensure_account_creates_the_configuration_set_with_reputation_and_suppression(
    moto_ses: tuple[SesProvider, Any],
) -> None:
    # given
    provider, client = moto_ses
    setup = make_setup(tenant="")
    # when
    provider.ensure_account(setup)
    # then
    config_set = client.get_configuration_set(ConfigurationSetName=NAME)
    assert config_set["ReputationOptions"] == {"ReputationMetricsEnabled": True}
    assert config_set["SuppressionOptions"] == {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]}
    # moto answers SendingOptions wrongly (it nests the dict), so read what it stored
    assert moto_backend().config_sets[NAME].enabled == {"SendingEnabled": True}


def test_ensure_account_twice_is_fine(moto_ses: tuple[SesProvider, Any]) -> None:
    provider, client = moto_ses
    provider.ensure_account(make_setup(tenant=""))
    provider.ensure_account(make_setup(tenant=""))
    assert client.list_configuration_sets()["ConfigurationSets"] == [NAME]


def test_ensure_account_without_tenants_clears_the_tenant(moto_ses: tuple[SesProvider, Any]) -> None:
    provider, _client = moto_ses
    setup = make_setup()
    provider.ensure_account(setup)
    assert setup.tenant == ""


def test_easy_dkim_identity_is_created_with_2048_bit_keys_and_the_configuration_set(
    moto_ses: tuple[SesProvider, Any],
) -> None:
    provider, client = moto_ses
    provider.ensure_account(make_setup(tenant=""))
    # when
    provider.create_domain_identity(make_setup(tenant=""), DOMAIN)
    # then
    identity = client.get_email_identity(EmailIdentity=DOMAIN)
    assert identity["IdentityType"] == "DOMAIN"
    stored = moto_backend().email_identities[DOMAIN]
    assert stored.configuration_set_name == NAME
    assert stored.dkim_signing_attributes == {"NextSigningKeyLength": "RSA_2048_BIT"}


def test_own_dkim_key_is_sent_as_base64_der_without_pem_armour(
    moto_ses: tuple[SesProvider, Any], rsa_key: rsa.RSAPrivateKey, key_pem: str
) -> None:
    provider, _client = moto_ses
    # when
    provider.create_domain_identity(make_setup(tenant=""), DOMAIN, byo_dkim=("xes2026", key_pem))
    # then
    attributes = moto_backend().email_identities[DOMAIN].dkim_signing_attributes
    assert attributes["DomainSigningSelector"] == "xes2026"
    sent = attributes["DomainSigningPrivateKey"]
    assert "-----" not in sent
    assert "\n" not in sent
    loaded = serialization.load_der_private_key(base64.b64decode(sent), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    assert loaded.private_numbers() == rsa_key.private_numbers()


def answer(client: Any, operation: str, parsed: dict[str, Any], status: int = 200) -> None:
    """Answer one operation that moto lacks the way botocore's Stubber does (``before-call``); all other
    calls still reach moto, so its state shows what really happened."""

    def handler(**kwargs: Any) -> tuple[AWSResponse, dict[str, Any]]:
        return AWSResponse(None, status, {}, None), {**parsed, "ResponseMetadata": {"HTTPStatusCode": status}}

    client.meta.events.register(f"before-call.sesv2.{operation}", handler)


def test_identity_created_at_ses_is_gone_again_when_the_tenant_association_fails(
    moto_ses: tuple[SesProvider, Any],
) -> None:
    # given: tenants on; SES refuses to associate the new identity with the tenant
    _provider, client = moto_ses
    provider = SesProvider(client=client, region=REGION, tenants=True)
    answer(client, "GetTenant", {"Tenant": {"TenantName": NAME, "TenantArn": TENANT_ARN}})
    answer(
        client,
        "CreateTenantResourceAssociation",
        {"Error": {"Code": "LimitExceededException", "Message": "Too many resources for this tenant."}},
        status=400,
    )
    # when
    with pytest.raises(ProviderError) as caught:
        provider.create_domain_identity(make_setup(), DOMAIN)
    # then: moto has no identity left, and the user reads what happened
    assert DOMAIN not in moto_backend().email_identities
    assert not provider.identity_state(DOMAIN).exists
    assert caught.value.code == "LimitExceededException"
    assert "Nothing was changed" in caught.value.user_message


def test_delete_domain_identity_removes_it_and_twice_is_fine(moto_ses: tuple[SesProvider, Any]) -> None:
    provider, _client = moto_ses
    provider.create_domain_identity(make_setup(tenant=""), DOMAIN)
    assert provider.identity_state(DOMAIN).exists
    # when
    provider.delete_domain_identity(make_setup(tenant=""), DOMAIN)
    provider.delete_domain_identity(make_setup(tenant=""), DOMAIN)
    # then
    state = provider.identity_state(DOMAIN)
    assert not state.exists
    assert not state.verified_for_sending


def test_ip_pool_is_standard_and_creating_it_twice_is_fine(moto_ses: tuple[SesProvider, Any]) -> None:
    provider, client = moto_ses
    provider.ensure_ip_pool(NAME)
    provider.ensure_ip_pool(NAME)
    assert client.list_dedicated_ip_pools()["DedicatedIpPools"] == [NAME]
    assert client.get_dedicated_ip_pool(PoolName=NAME)["DedicatedIpPool"]["ScalingMode"] == "STANDARD"


def test_send_raw_sends_the_message_to_the_envelope_recipients(moto_ses: tuple[SesProvider, Any]) -> None:
    provider, _client = moto_ses
    provider.create_domain_identity(make_setup(tenant=""), DOMAIN)
    # when
    message_id = provider.send_raw(
        make_setup(tenant=""),
        raw_message("Spring offers"),
        from_address="news@alpha.example",
        recipients=["reader@example.net"],
        tags={"campaign": "12"},
    )
    # then
    assert message_id
    [sent] = moto_backend().sent_messages
    assert sent.id == message_id
    assert sent.source == "news@alpha.example"
    assert "reader@example.net" in sent.destinations
    assert "Subject: Spring offers" in sent.raw_data


def test_send_from_an_unverified_domain_is_rejected(moto_ses: tuple[SesProvider, Any]) -> None:
    provider, _client = moto_ses
    with pytest.raises(MessageRejected) as caught:
        provider.send_raw(
            make_setup(tenant=""),
            raw_message(),
            from_address="news@unknown.example",
            recipients=["a@b.example"],
            tags={},
        )
    assert caught.value.code == "MessageRejected"
    assert "unknown.example" in caught.value.reason
    assert caught.value.retryable is False


# --- Stubber: account set-up ---------------------------------------------------------------------


def expect_full_account_setup(stubber: Stubber) -> None:
    stubber.add_response(
        "create_tenant",
        {"TenantName": NAME, "TenantId": "tn-0123456789abcdef", "TenantArn": TENANT_ARN},
        {
            "TenantName": NAME,
            "SuppressionAttributes": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"], "SuppressionScope": "TENANT"},
            "Tags": [{"Key": "xes-sending-account", "Value": "7"}],
        },
    )
    stubber.add_response(
        "create_configuration_set",
        {},
        {
            "ConfigurationSetName": NAME,
            "ReputationOptions": {"ReputationMetricsEnabled": True},
            "SendingOptions": {"SendingEnabled": True},
            "SuppressionOptions": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"], "SuppressionScope": "TENANT"},
            "Tags": [{"Key": "xes-sending-account", "Value": "7"}],
        },
    )
    stubber.add_response("create_tenant_resource_association", {}, {"TenantName": NAME, "ResourceArn": CONFIG_SET_ARN})


EVENT_DESTINATION = {
    "ConfigurationSetName": NAME,
    "EventDestinationName": "xes-sns",
    "EventDestination": {"Enabled": True, "MatchingEventTypes": EVENT_TYPES, "SnsDestination": {"TopicArn": TOPIC}},
}


def test_ensure_account_creates_tenant_configuration_set_and_event_destination(
    stubbed: tuple[SesProvider, Stubber], settings: Any
) -> None:
    # given
    settings.SES_EVENT_TOPIC_ARN = TOPIC
    provider, stubber = stubbed
    expect_full_account_setup(stubber)
    stubber.add_response("create_configuration_set_event_destination", {}, EVENT_DESTINATION)
    setup = make_setup()
    # when
    provider.ensure_account(setup)
    # then: the stubber checked every call and its parameters
    assert setup.tenant == NAME
    assert set(EVENT_TYPES) == {
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
    }


def test_ensure_account_again_accepts_what_exists_and_updates_the_event_destination(
    stubbed: tuple[SesProvider, Stubber], settings: Any
) -> None:
    settings.SES_EVENT_TOPIC_ARN = TOPIC
    provider, stubber = stubbed
    error(stubber, "create_tenant", "AlreadyExistsException", {"TenantName": NAME, **_ANY_TENANT_PARAMS})
    stubber.add_response("get_tenant", {"Tenant": {"TenantName": NAME, "TenantArn": TENANT_ARN}}, {"TenantName": NAME})
    error(stubber, "create_configuration_set", "AlreadyExistsException", _ANY_CONFIG_SET_PARAMS)
    error(
        stubber,
        "create_tenant_resource_association",
        "AlreadyExistsException",
        {"TenantName": NAME, "ResourceArn": CONFIG_SET_ARN},
    )
    error(stubber, "create_configuration_set_event_destination", "AlreadyExistsException", EVENT_DESTINATION)
    stubber.add_response("update_configuration_set_event_destination", {}, EVENT_DESTINATION)
    # when / then: no error
    provider.ensure_account(make_setup())


_ANY_TENANT_PARAMS = {
    "SuppressionAttributes": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"], "SuppressionScope": "TENANT"},
    "Tags": [{"Key": "xes-sending-account", "Value": "7"}],
}
_ANY_CONFIG_SET_PARAMS = {
    "ConfigurationSetName": NAME,
    "ReputationOptions": {"ReputationMetricsEnabled": True},
    "SendingOptions": {"SendingEnabled": True},
    "SuppressionOptions": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"], "SuppressionScope": "TENANT"},
    "Tags": [{"Key": "xes-sending-account", "Value": "7"}],
}


def test_ensure_account_failing_at_the_last_step_undoes_everything_it_created(
    stubbed: tuple[SesProvider, Stubber], settings: Any
) -> None:
    # given: the event destination is refused (no permission for the topic)
    settings.SES_EVENT_TOPIC_ARN = TOPIC
    provider, stubber = stubbed
    expect_full_account_setup(stubber)
    error(stubber, "create_configuration_set_event_destination", "AccessDeniedException", EVENT_DESTINATION)
    # then: association, configuration set and tenant are removed again, newest first
    stubber.add_response("delete_tenant_resource_association", {}, {"TenantName": NAME, "ResourceArn": CONFIG_SET_ARN})
    stubber.add_response("delete_configuration_set", {}, {"ConfigurationSetName": NAME})
    stubber.add_response("delete_tenant", {}, {"TenantName": NAME})
    # when
    with pytest.raises(ProviderError) as caught:
        provider.ensure_account(make_setup())
    stubber.assert_no_pending_responses()
    assert caught.value.user_message == UNREACHABLE
    assert caught.value.code == "AccessDeniedException"
    assert not isinstance(caught.value, Throttled)


def test_ensure_account_throttled_is_retryable(stubbed: tuple[SesProvider, Stubber]) -> None:
    provider, stubber = stubbed
    error(stubber, "create_tenant", "TooManyRequestsException", {"TenantName": NAME, **_ANY_TENANT_PARAMS}, status=429)
    with pytest.raises(Throttled) as caught:
        provider.ensure_account(make_setup())
    assert caught.value.retryable is True
    assert "too many requests" in caught.value.user_message


# --- Stubber: domain identities ------------------------------------------------------------------

EASY = {"NextSigningKeyLength": "RSA_2048_BIT"}


def expect_identity_created(stubber: Stubber, signing: dict[str, str] = EASY) -> None:
    stubber.add_response(
        "create_email_identity",
        {
            "IdentityType": "DOMAIN",
            "VerifiedForSendingStatus": False,
            "DkimAttributes": {"SigningEnabled": True, "Status": "PENDING", "Tokens": TOKENS},
        },
        {"EmailIdentity": DOMAIN, "DkimSigningAttributes": signing, "ConfigurationSetName": NAME},
    )


def test_new_identity_is_associated_with_the_tenant_and_returns_the_dkim_tokens(
    stubbed: tuple[SesProvider, Stubber],
) -> None:
    provider, stubber = stubbed
    expect_identity_created(stubber)
    stubber.add_response("get_tenant", {"Tenant": {"TenantName": NAME, "TenantArn": TENANT_ARN}}, {"TenantName": NAME})
    stubber.add_response("create_tenant_resource_association", {}, {"TenantName": NAME, "ResourceArn": IDENTITY_ARN})
    # when
    dkim = provider.create_domain_identity(make_setup(), DOMAIN)
    # then
    assert dkim.tokens == TOKENS
    assert dkim.status == "PENDING"


def test_identity_is_deleted_again_when_the_tenant_association_fails(stubbed: tuple[SesProvider, Stubber]) -> None:
    # given
    provider, stubber = stubbed
    expect_identity_created(stubber)
    stubber.add_response("get_tenant", {"Tenant": {"TenantName": NAME, "TenantArn": TENANT_ARN}}, {"TenantName": NAME})
    error(
        stubber,
        "create_tenant_resource_association",
        "BadRequestException",
        {"TenantName": NAME, "ResourceArn": IDENTITY_ARN},
    )
    stubber.add_response("delete_email_identity", {}, {"EmailIdentity": DOMAIN})
    # when
    with pytest.raises(ProviderError) as caught:
        provider.create_domain_identity(make_setup(), DOMAIN)
    # then: the identity was deleted again, and the message is plain
    stubber.assert_no_pending_responses()
    assert caught.value.user_message == "Amazon SES refused the request. Nothing was changed."
    assert caught.value.retryable is False


def test_adding_an_existing_identity_again_is_fine(stubbed: tuple[SesProvider, Stubber]) -> None:
    provider, stubber = stubbed
    error(
        stubber,
        "create_email_identity",
        "AlreadyExistsException",
        {"EmailIdentity": DOMAIN, "DkimSigningAttributes": EASY, "ConfigurationSetName": NAME},
    )
    stubber.add_response(
        "get_email_identity",
        {
            "IdentityType": "DOMAIN",
            "ConfigurationSetName": NAME,
            "DkimAttributes": {"Status": "SUCCESS", "Tokens": TOKENS, "SigningAttributesOrigin": "AWS_SES"},
        },
        {"EmailIdentity": DOMAIN},
    )
    stubber.add_response("get_tenant", {"Tenant": {"TenantName": NAME, "TenantArn": TENANT_ARN}}, {"TenantName": NAME})
    error(
        stubber,
        "create_tenant_resource_association",
        "AlreadyExistsException",
        {"TenantName": NAME, "ResourceArn": IDENTITY_ARN},
    )
    # when
    dkim = provider.create_domain_identity(make_setup(), DOMAIN)
    # then: nothing else was called (no DKIM change, no configuration-set change)
    assert dkim.tokens == TOKENS
    assert dkim.status == "SUCCESS"


def test_existing_identity_failing_dkim_switch_puts_back_configuration_set_and_tenant(
    stubbed: tuple[SesProvider, Stubber], key_pem: str
) -> None:
    # given: the identity exists with another configuration set and Easy DKIM; we want our own key
    provider, stubber = stubbed
    own_key = {"DomainSigningSelector": "xes2026", "DomainSigningPrivateKey": private_key_base64(key_pem)}
    error(
        stubber,
        "create_email_identity",
        "AlreadyExistsException",
        {"EmailIdentity": DOMAIN, "DkimSigningAttributes": own_key, "ConfigurationSetName": NAME},
    )
    stubber.add_response(
        "get_email_identity",
        {
            "ConfigurationSetName": "xes-acct-3",
            "DkimAttributes": {"Status": "SUCCESS", "Tokens": TOKENS, "SigningAttributesOrigin": "AWS_SES"},
        },
        {"EmailIdentity": DOMAIN},
    )
    stubber.add_response(
        "put_email_identity_configuration_set_attributes", {}, {"EmailIdentity": DOMAIN, "ConfigurationSetName": NAME}
    )
    stubber.add_response("get_tenant", {"Tenant": {"TenantName": NAME, "TenantArn": TENANT_ARN}}, {"TenantName": NAME})
    stubber.add_response("create_tenant_resource_association", {}, {"TenantName": NAME, "ResourceArn": IDENTITY_ARN})
    error(
        stubber,
        "put_email_identity_dkim_signing_attributes",
        "TooManyRequestsException",
        {"EmailIdentity": DOMAIN, "SigningAttributesOrigin": "EXTERNAL", "SigningAttributes": own_key},
        status=429,
    )
    # then: undone newest first
    stubber.add_response("delete_tenant_resource_association", {}, {"TenantName": NAME, "ResourceArn": IDENTITY_ARN})
    stubber.add_response(
        "put_email_identity_configuration_set_attributes",
        {},
        {"EmailIdentity": DOMAIN, "ConfigurationSetName": "xes-acct-3"},
    )
    # when
    with pytest.raises(Throttled):
        provider.create_domain_identity(make_setup(), DOMAIN, byo_dkim=("xes2026", key_pem))
    stubber.assert_no_pending_responses()


def test_existing_identity_with_own_key_switches_back_to_easy_dkim(stubbed: tuple[SesProvider, Stubber]) -> None:
    provider, stubber = stubbed
    error(
        stubber,
        "create_email_identity",
        "AlreadyExistsException",
        {"EmailIdentity": DOMAIN, "DkimSigningAttributes": EASY, "ConfigurationSetName": NAME},
    )
    stubber.add_response(
        "get_email_identity",
        {"ConfigurationSetName": NAME, "DkimAttributes": {"Status": "SUCCESS", "SigningAttributesOrigin": "EXTERNAL"}},
        {"EmailIdentity": DOMAIN},
    )
    stubber.add_response(
        "put_email_identity_dkim_signing_attributes",
        {"DkimStatus": "PENDING", "DkimTokens": TOKENS},
        {"EmailIdentity": DOMAIN, "SigningAttributesOrigin": "AWS_SES", "SigningAttributes": EASY},
    )
    dkim = provider.create_domain_identity(make_setup(tenant=""), DOMAIN)
    assert dkim.tokens == TOKENS
    assert dkim.status == "PENDING"


def test_unreadable_dkim_key_changes_nothing(stubbed: tuple[SesProvider, Stubber]) -> None:
    provider, _stubber = stubbed  # no call queued: any SES call would fail the test
    with pytest.raises(ProviderError) as caught:
        provider.create_domain_identity(make_setup(), DOMAIN, byo_dkim=("xes2026", "not a key"))
    assert caught.value.user_message == "The DKIM private key could not be read. Nothing was changed."


def test_delete_identity_removes_the_tenant_association_and_accepts_what_is_gone(
    stubbed: tuple[SesProvider, Stubber],
) -> None:
    provider, stubber = stubbed
    stubber.add_response("get_tenant", {"Tenant": {"TenantName": NAME, "TenantArn": TENANT_ARN}}, {"TenantName": NAME})
    error(
        stubber,
        "delete_tenant_resource_association",
        "NotFoundException",
        {"TenantName": NAME, "ResourceArn": IDENTITY_ARN},
    )
    error(stubber, "delete_email_identity", "NotFoundException", {"EmailIdentity": DOMAIN})
    provider.delete_domain_identity(make_setup(), DOMAIN)


def test_identity_state_reads_verification_dkim_and_mail_from(stubbed: tuple[SesProvider, Stubber]) -> None:
    provider, stubber = stubbed
    stubber.add_response(
        "get_email_identity",
        {
            "VerifiedForSendingStatus": True,
            "DkimAttributes": {"Status": "SUCCESS"},
            "MailFromAttributes": {
                "MailFromDomain": f"bounce.{DOMAIN}",
                "MailFromDomainStatus": "PENDING",
                "BehaviorOnMxFailure": "USE_DEFAULT_VALUE",
            },
        },
        {"EmailIdentity": DOMAIN},
    )
    state = provider.identity_state(DOMAIN)
    assert state.exists
    assert state.verified_for_sending
    assert state.dkim_status == "SUCCESS"
    assert state.mail_from_status == "PENDING"


def test_set_mail_from_falls_back_to_the_default_on_mx_failure(stubbed: tuple[SesProvider, Stubber]) -> None:
    provider, stubber = stubbed
    stubber.add_response(
        "put_email_identity_mail_from_attributes",
        {},
        {"EmailIdentity": DOMAIN, "MailFromDomain": f"bounce.{DOMAIN}", "BehaviorOnMxFailure": "USE_DEFAULT_VALUE"},
    )
    stubber.add_response(
        "put_email_identity_mail_from_attributes",
        {},
        {"EmailIdentity": DOMAIN, "BehaviorOnMxFailure": "USE_DEFAULT_VALUE"},
    )
    provider.set_mail_from(make_setup(), DOMAIN, f"bounce.{DOMAIN}")
    provider.set_mail_from(make_setup(), DOMAIN, None)  # back to SES's own MAIL FROM


def test_set_mail_from_for_an_unknown_identity_explains_itself(stubbed: tuple[SesProvider, Stubber]) -> None:
    provider, stubber = stubbed
    error(
        stubber,
        "put_email_identity_mail_from_attributes",
        "NotFoundException",
        {"EmailIdentity": DOMAIN, "MailFromDomain": f"bounce.{DOMAIN}", "BehaviorOnMxFailure": "USE_DEFAULT_VALUE"},
        status=404,
    )
    with pytest.raises(ProviderError) as caught:
        provider.set_mail_from(make_setup(), DOMAIN, f"bounce.{DOMAIN}")
    assert "Nothing was changed" in caught.value.user_message
    assert caught.value.code == "NotFoundException"


# --- Stubber: dedicated IPs, quota ---------------------------------------------------------------


def test_dedicated_ip_goes_into_the_pool_and_the_configuration_set_uses_it(
    stubbed: tuple[SesProvider, Stubber],
) -> None:
    provider, stubber = stubbed
    stubber.add_response("put_dedicated_ip_in_pool", {}, {"Ip": "198.51.100.7", "DestinationPoolName": NAME})
    stubber.add_response(
        "put_configuration_set_delivery_options", {}, {"ConfigurationSetName": NAME, "SendingPoolName": NAME}
    )
    stubber.add_response("put_configuration_set_delivery_options", {}, {"ConfigurationSetName": NAME})
    provider.assign_dedicated_ip(NAME, "198.51.100.7")
    provider.use_ip_pool(make_setup(), NAME)
    provider.use_ip_pool(make_setup(), None)  # back to the shared pool


def test_ensure_ip_pool_accepts_an_existing_pool(stubbed: tuple[SesProvider, Stubber]) -> None:
    provider, stubber = stubbed
    error(stubber, "create_dedicated_ip_pool", "AlreadyExistsException", {"PoolName": NAME, "ScalingMode": "STANDARD"})
    provider.ensure_ip_pool(NAME)


def test_quota_reads_the_account(stubbed: tuple[SesProvider, Stubber]) -> None:
    provider, stubber = stubbed
    stubber.add_response(
        "get_account",
        {
            "SendQuota": {"Max24HourSend": 200000.0, "MaxSendRate": 50.0, "SentLast24Hours": 1234.0},
            "SendingEnabled": True,
        },
        {},
    )
    quota = provider.quota()
    assert quota.max_24_hour_send == 200_000
    assert quota.max_send_rate == 50.0
    assert quota.sent_last_24_hours == 1234
    assert quota.sending_enabled is True


# --- Stubber: sending ----------------------------------------------------------------------------


def send_params(raw: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "FromEmailAddress": "news@alpha.example",
        "Destination": {"ToAddresses": ["reader@example.net"]},
        "Content": {"Raw": {"Data": raw}},
        "ConfigurationSetName": NAME,
        **extra,
    }


def send(provider: SesProvider, raw: bytes, tags: dict[str, str] | None = None) -> str:
    return provider.send_raw(
        make_setup(), raw, from_address="news@alpha.example", recipients=["reader@example.net"], tags=tags or {}
    )


def test_send_raw_uses_configuration_set_tenant_and_sanitised_tags(stubbed: tuple[SesProvider, Stubber]) -> None:
    provider, stubber = stubbed
    raw = raw_message()
    stubber.add_response(
        "send_email",
        {"MessageId": "0107018d-ses-id"},
        send_params(
            raw,
            EmailTags=[
                {"Name": "campaign", "Value": "12"},
                {"Name": "message_id", "Value": "m-42_x_y_z"},
                {"Name": "long", "Value": "x" * 256},
            ],
            TenantName=NAME,
        ),
    )
    message_id = send(provider, raw, {"campaign": "12", "message id": "m-42@x.y/z", "long": "x" * 300, "empty": ""})
    assert message_id == "0107018d-ses-id"


@pytest.mark.parametrize(
    ("code", "status", "message", "expected"),
    [
        ("TooManyRequestsException", 429, "Maximum sending rate exceeded.", Throttled),
        ("TooManyRequestsException", 429, "Daily message quota exceeded.", SendingPaused),
        ("LimitExceededException", 400, "Daily message quota exceeded.", SendingPaused),
        ("AccountSendingPausedException", 400, "Sending is paused for this account.", SendingPaused),
        ("SendingPausedException", 400, "Sending is paused for this configuration set.", SendingPaused),
        ("AccountSuspendedException", 400, "Account suspended.", SendingPaused),
        ("MessageRejected", 400, "Email address is not verified.", MessageRejected),
        ("MailFromDomainNotVerifiedException", 400, "MAIL FROM domain not verified.", MessageRejected),
        ("BadRequestException", 400, "Illegal address", MessageRejected),
    ],
)
def test_send_errors_map_to_what_the_sending_engine_must_do(
    stubbed: tuple[SesProvider, Stubber], code: str, status: int, message: str, expected: type[ProviderError]
) -> None:
    provider, stubber = stubbed
    raw = raw_message()
    error(stubber, "send_email", code, send_params(raw, EmailTags=[], TenantName=NAME), status=status, msg=message)
    with pytest.raises(ProviderError) as caught:
        send(provider, raw)
    assert type(caught.value) is expected
    assert caught.value.code == code
    assert caught.value.detail == message
    assert caught.value.user_message


def test_rejected_message_keeps_the_reason(stubbed: tuple[SesProvider, Stubber]) -> None:
    provider, stubber = stubbed
    raw = raw_message()
    reason = "Email address is not verified. The following identities failed the check: news@alpha.example"
    error(stubber, "send_email", "MessageRejected", send_params(raw, EmailTags=[], TenantName=NAME), msg=reason)
    with pytest.raises(MessageRejected) as caught:
        send(provider, raw)
    assert caught.value.reason == reason
    assert caught.value.user_message == f"Amazon SES refused this message: {reason}"
    assert caught.value.retryable is False


def test_paused_sending_is_retryable_so_the_campaign_waits(stubbed: tuple[SesProvider, Stubber]) -> None:
    provider, stubber = stubbed
    raw = raw_message()
    error(stubber, "send_email", "AccountSendingPausedException", send_params(raw, EmailTags=[], TenantName=NAME))
    with pytest.raises(SendingPaused) as caught:
        send(provider, raw)
    assert caught.value.retryable is True
    assert "Your messages are kept" in caught.value.user_message


def test_ses_server_error_is_retryable(stubbed: tuple[SesProvider, Stubber]) -> None:
    provider, stubber = stubbed
    error(stubber, "get_account", "InternalFailure", {}, status=500)
    with pytest.raises(ProviderError) as caught:
        provider.quota()
    assert caught.value.retryable is True
    assert caught.value.user_message == UNREACHABLE


# --- no connection, no credentials ---------------------------------------------------------------


def test_unreachable_endpoint_gives_a_clear_retryable_error() -> None:
    # A real client against a closed local port: a real connection error, no retries to keep it quick.
    client = boto3.session.Session().client(
        "sesv2",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2),
    )
    provider = SesProvider(client=client, region=REGION)
    with pytest.raises(ProviderError) as caught:
        provider.ensure_ip_pool(NAME)
    assert caught.value.user_message == UNREACHABLE
    assert caught.value.code == "EndpointConnectionError"
    assert caught.value.retryable is True


def test_missing_credentials_give_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_WEB_IDENTITY_TOKEN_FILE", raising=False)
    provider = SesProvider(region=REGION)
    with pytest.raises(ProviderError) as caught:
        provider.quota()
    assert caught.value.user_message == UNREACHABLE
    assert caught.value.code == "NoCredentialsError"
    assert caught.value.retryable is False


def test_dns_records_are_those_of_ses() -> None:
    provider = SesProvider(region=REGION)
    assert provider.spf_include == "amazonses.com"
    assert provider.mail_from_mx() == f"feedback-smtp.{REGION}.amazonses.com"
    assert provider.dkim_cname(DOMAIN, TOKENS[0]) == (
        f"{TOKENS[0]}._domainkey.{DOMAIN}",
        f"{TOKENS[0]}.dkim.amazonses.com",
    )
