"""Deliverability fixtures: the local authoritative DNS server and settings pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dns.resolver
import pytest

from deliverability.dns.resolver import make_resolver
from tests.deliverability.dns_server import TestDnsServer, shared_server

# Long enough for a loaded CI machine to answer a local query (0.5 s once timed out with the whole suite
# running on two cores); only the deliberate timeout cases wait this long.
TEST_DNS_TIMEOUT = 2.0


@pytest.fixture(scope="session")
def dns_server() -> TestDnsServer:
    """The test process's DNS server on 127.0.0.1 (a random port), started once."""
    return shared_server()


@pytest.fixture
def dns_zones(dns_server: TestDnsServer) -> Iterator[TestDnsServer]:
    """The DNS server with no zones; what a test publishes is gone after it."""
    dns_server.reset()
    yield dns_server
    dns_server.reset()


@pytest.fixture
def local_dns(dns_zones: TestDnsServer, settings: Any) -> TestDnsServer:
    """The empty DNS server, with ``DNS_NAMESERVERS`` pointing at it and a short ``DNS_TIMEOUT``,
    so every lookup of the portal goes there."""
    settings.DNS_NAMESERVERS = [dns_zones.address]
    settings.DNS_TIMEOUT = TEST_DNS_TIMEOUT
    return dns_zones


@pytest.fixture
def resolver(local_dns: TestDnsServer) -> dns.resolver.Resolver:
    """A resolver built from the settings, asking the local DNS server."""
    return make_resolver()
