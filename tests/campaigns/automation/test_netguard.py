"""SSRF protection of webhook requests with the production setting: no private, loopback,
link-local, multicast, reserved or unique-local destinations, by address or by name (DNS answers
come from a resolver stub at the module's one DNS boundary), at save time and at delivery time."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from campaigns.automation import netguard, webhooks
from campaigns.automation.models import WebhookDelivery
from campaigns.automation.netguard import UnsafeDestination, check_url
from tests.campaigns.automation.conftest import Receiver, World, make_endpoint

PUBLIC = "93.184.215.14"


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names the resolver stub answers; anything else does not resolve. Records every lookup."""
    answers: dict[str, list[str]] = {}
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    monkeypatch.setattr(netguard, "resolve", resolve)
    answers["__lookups__"] = lookups  # type: ignore[assignment]
    return answers


@pytest.mark.usefixtures("production_webhooks")
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://127.8.9.10:8443/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://172.16.0.1/hook", "private"),
        ("https://192.168.1.20/hook", "private"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[::1]/hook", "loopback"),
        ("https://[::ffff:127.0.0.1]/hook", "loopback"),
        ("https://[::ffff:10.0.0.1]/hook", "private"),
        ("https://[fd12:3456::1]/hook", "private"),
        ("https://[fe80::1]/hook", "link-local"),
        ("https://100.64.0.1/hook", "reserved"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://224.0.0.1/hook", "multicast"),
        ("https://240.0.0.1/hook", "reserved"),
    ],
)
def test_private_and_special_addresses_are_refused(url: str, reason: str) -> None:
    with pytest.raises(UnsafeDestination, match=reason):
        check_url(url)


@pytest.mark.usefixtures("production_webhooks")
def test_a_host_name_resolving_to_a_private_address_is_refused(dns: dict[str, Any]) -> None:
    dns["intranet.example.com"] = ["10.20.30.40"]
    dns["mixed.example.com"] = [PUBLIC, "127.0.0.1"]
    dns["v6.example.com"] = ["fd00::5"]
    for host, shown in [("intranet", "10.20.30.40"), ("mixed", "127.0.0.1"), ("v6", "fd00::5")]:
        with pytest.raises(UnsafeDestination, match=shown.replace(".", r"\.")):
            check_url(f"https://{host}.example.com/hook")


@pytest.mark.usefixtures("production_webhooks")
def test_a_public_host_name_is_accepted(dns: dict[str, Any]) -> None:
    dns["hooks.example.com"] = [PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]
    target = check_url("https://hooks.example.com:8443/in?x=1")
    assert (target.host, target.port, target.path) == ("hooks.example.com", 8443, "/in?x=1")
    assert target.addresses == (PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c")


@pytest.mark.usefixtures("production_webhooks")
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://hooks.example.com/", "https"),
        ("ftp://hooks.example.com/", "https"),
        ("https://user:pass@hooks.example.com/", "passwords"),
        ("https://hooks.example.com/#x", "fragment"),
        ("https:///path-only", "host name"),
        ("https://hooks.example.com:99999/", "valid"),
        ("https://hooks .example.com/", "spaces"),
        ("https://nowhere.example.com/", "could not find"),
    ],
)
def test_malformed_or_unencrypted_urls_are_refused(dns: dict[str, Any], url: str, message: str) -> None:
    dns["hooks.example.com"] = [PUBLIC]
    with pytest.raises(UnsafeDestination, match=message):
        check_url(url)


def test_the_test_setting_allows_local_addresses(local_webhooks: Any) -> None:
    assert check_url("http://127.0.0.1:8080/hook").addresses == ("127.0.0.1",)


@pytest.mark.django_db
def test_delivery_checks_the_address_again_dns_rebinding(
    world: World, receiver: Receiver, settings: Any, dns: dict[str, Any], django_capture_on_commit_callbacks
) -> None:
    # given: http allowed (to reach the local server), private addresses not; the name was public
    # when the endpoint was saved
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.WEBHOOKS_ALLOW_PRIVATE_ADDRESSES = False
    url = f"http://rebind.example.com:{receiver.port}/hook"
    dns["rebind.example.com"] = [PUBLIC]
    check_url(url)
    endpoint = make_endpoint(world.organisation, url)
    # when: it now resolves to the loopback address where our server listens
    dns["rebind.example.com"] = ["127.0.0.1"]
    delivery = webhooks.send_test_event(endpoint)
    status = webhooks.deliver(delivery.pk)
    # then: refused before any connection, logged, and retried later (the name may be fixed)
    assert status == WebhookDelivery.Status.RETRYING
    assert receiver.requests == []
    delivery.refresh_from_db()
    assert "127.0.0.1" in delivery.last_error
    assert "public internet addresses" in delivery.attempt_log.get().error


@pytest.mark.django_db
def test_the_connection_goes_to_the_checked_address_without_resolving_again(
    local_webhooks: Any, receiver: Receiver, dns: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    dns["hooks.example.test"] = ["127.0.0.1"]
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        assert host != "hooks.example.test", "the host name was resolved again when connecting"
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    response = netguard.post(f"http://hooks.example.test:{receiver.port}/in", b"{}", {"X-Test": "1"})
    assert response.status == 200
    assert dns["__lookups__"] == ["hooks.example.test"]
    request = receiver.requests[0]
    assert request.headers["Host"] == f"hooks.example.test:{receiver.port}"
    assert request.headers["X-Test"] == "1"
    assert request.headers["User-Agent"] == netguard.USER_AGENT


def test_a_system_check_warns_about_private_addresses_in_production(settings: Any) -> None:
    from campaigns.automation.checks import check_webhook_settings

    settings.DEBUG = False
    settings.WEBHOOKS_ALLOW_PRIVATE_ADDRESSES = True
    settings.WEBHOOKS_ALLOW_HTTP = False
    assert [w.id for w in check_webhook_settings(None)] == ["automation.W001"]
    settings.WEBHOOKS_ALLOW_PRIVATE_ADDRESSES = False
    assert check_webhook_settings(None) == []
