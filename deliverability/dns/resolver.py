"""The dnspython resolver every DNS check uses, configured from settings.

``DNS_NAMESERVERS`` lists "ip", "ip:port" or "[ipv6]:port" entries (empty: the system resolver);
``DNS_TIMEOUT`` is the lifetime of one lookup in seconds. No cache: a customer who has just fixed a
record wants the next check to see it.
"""

from __future__ import annotations

import ipaddress

import dns.nameserver
import dns.resolver
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULT_PORT = 53
# Per-try wait: a single lost UDP datagram should cost a retry, not the whole lifetime.
TRY_TIMEOUT = 1.0


def parse_nameserver(entry: str) -> dns.nameserver.Do53Nameserver:
    """One ``DNS_NAMESERVERS`` entry as a plain-DNS nameserver (UDP, falling back to TCP)."""
    text = entry.strip()
    port = DEFAULT_PORT
    if text.startswith("["):
        address, _sep, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ImproperlyConfigured(f"DNS_NAMESERVERS: cannot read {entry!r}")
            port = _port(rest[1:], entry)
    elif text.count(":") == 1:
        address, _sep, port_text = text.partition(":")
        port = _port(port_text, entry)
    else:
        address = text  # an IPv4 address, or an IPv6 address without port
    try:
        ipaddress.ip_address(address)
    except ValueError as exc:
        raise ImproperlyConfigured(f"DNS_NAMESERVERS: {entry!r} is not an IP address") from exc
    return dns.nameserver.Do53Nameserver(address, port)


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ImproperlyConfigured(f"DNS_NAMESERVERS: {entry!r} has no valid port")
    return int(text)


def make_resolver() -> dns.resolver.Resolver:
    """A fresh resolver for the configured nameservers, with the configured lifetime and no cache."""
    entries = [entry for entry in settings.DNS_NAMESERVERS if entry.strip()]
    if entries:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [parse_nameserver(entry) for entry in entries]
    else:
        try:
            resolver = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            # No /etc/resolv.conf: every lookup then ends as "unknown", which the checks can report.
            resolver = dns.resolver.Resolver(configure=False)
    timeout = float(settings.DNS_TIMEOUT)
    resolver.lifetime = timeout
    resolver.timeout = min(TRY_TIMEOUT, timeout)
    resolver.cache = None
    # A SERVFAIL is an answer ("unknown, will retry"), not a reason to hammer the same server.
    resolver.retry_servfail = False
    return resolver
