"""Requests to customers' webhook URLs without server-side request forgery.

A webhook URL is the customer's input, and our servers request it: it must never reach our own
network (the database, Redis, the cloud metadata service at 169.254.169.254) however it is written.

1. The URL is parsed strictly: https (http only where :func:`conf.allow_http`), a host, no user
   name or password, no fragment.
2. The host is resolved (:func:`resolve`, the one place that asks DNS; tests replace it) and *every*
   address must be a public internet address: private, loopback, link-local, multicast, reserved,
   unspecified, shared (100.64/10), unique-local (fc00::/7) and IPv6 forms embedding such an IPv4
   address are refused, unless :func:`conf.allow_private_addresses` (tests and local development).
3. The request connects to an address checked in step 2, never to the name again, so a DNS answer
   that changes between the check and the connection (DNS rebinding) cannot redirect it; TLS still
   verifies the certificate against the host name.
4. Redirects are not followed (a 3xx answer is a failed attempt), timeouts are short, and only the
   first :data:`RESPONSE_MAX_BYTES` of the answer are read.

The checks run when an endpoint is saved and again at every delivery.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from django.utils.translation import gettext as _

from campaigns.automation import conf

URL_MAX_LENGTH = 2000
RESPONSE_MAX_BYTES = 2048
CONNECT_TIMEOUT = 5.0
USER_AGENT = "XES-Webhooks/1.0"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Not covered by the ipaddress module's flags (or not in every Python version).
_EXTRA_BLOCKED = [
    ipaddress.ip_network("100.64.0.0/10"),  # shared address space (carrier-grade NAT)
    ipaddress.ip_network("192.0.0.0/24"),  # IETF protocol assignments
    ipaddress.ip_network("198.18.0.0/15"),  # benchmarking
    ipaddress.ip_network("64:ff9b::/96"),  # NAT64 (embeds an IPv4 address)
    ipaddress.ip_network("64:ff9b:1::/48"),
]


class UnsafeDestination(Exception):  # noqa: N818 - a verdict, shown to the user
    """The URL may not be requested; the message says why in plain words."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (``addresses``) and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Response:
    status: int
    body: str
    duration_ms: int


def parse_url(url: str) -> SplitResult:
    """Step 1: the URL's parts, or :class:`UnsafeDestination` with the reason."""
    url = url.strip()
    if not url or len(url) > URL_MAX_LENGTH:
        raise UnsafeDestination(_("Enter a URL of at most %(max)d characters.") % {"max": URL_MAX_LENGTH})
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise UnsafeDestination(_("The URL must not contain spaces or control characters."))
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeDestination(_("This is not a valid URL.")) from exc
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UnsafeDestination(_("Use an https:// URL."))
    if scheme == "http" and not conf.allow_http():
        raise UnsafeDestination(_("Use an https:// URL: events are only sent encrypted."))
    if not parts.hostname:
        raise UnsafeDestination(_("The URL needs a host name, e.g. https://example.com/xes-events."))
    if parts.username is not None or parts.password is not None:
        raise UnsafeDestination(_("Leave user names and passwords out of the URL; check our signature instead."))
    if parts.fragment:
        raise UnsafeDestination(_("Leave out the #fragment: it is never sent to a server."))
    if port == 0:
        raise UnsafeDestination(_("This is not a valid port."))
    return parts


def blocked_reason(address: str) -> str | None:
    """Why ``address`` is not a public internet address (``None`` if it is)."""
    try:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return _("not an IP address")
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one (mapped, 6to4, Teredo) is judged as itself.
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            inner = blocked_reason(str(embedded))
            if inner:
                return inner
    if ip.is_loopback:
        return _("a loopback address")
    if ip.is_link_local:
        return _("a link-local address")
    if ip.is_multicast:
        return _("a multicast address")
    if ip.is_unspecified:
        return _("an unspecified address")
    if ip.is_reserved:
        return _("a reserved address")
    if ip.is_private:
        return _("a private network address")
    if not ip.is_global or any(ip in net for net in _EXTRA_BLOCKED):
        return _("a reserved address")
    return None


def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (the system resolver). The only DNS lookup of this module;
    tests replace it with a stub."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    seen: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in seen:
            seen.append(address)
    return seen


def check_url(url: str) -> Target:
    """Steps 1 and 2: parse and resolve ``url``; raises :class:`UnsafeDestination` with the reason."""
    parts = parse_url(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            host.encode("idna")
            addresses = resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise UnsafeDestination(_("We could not find the host %(host)s.") % {"host": host}) from exc
        if not addresses:
            raise UnsafeDestination(_("We could not find the host %(host)s.") % {"host": host})
    if not conf.allow_private_addresses():
        for address in addresses:
            reason = blocked_reason(address)
            if reason and literal is not None:
                raise UnsafeDestination(
                    _("%(address)s is %(reason)s: webhooks are only sent to public internet addresses.")
                    % {"address": address, "reason": reason}
                )
            if reason:
                raise UnsafeDestination(
                    _(
                        "%(host)s points to %(address)s, %(reason)s: webhooks are only sent to public internet "
                        "addresses."
                    )
                    % {"host": host, "address": address, "reason": reason}
                )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme.lower(), host, port, path, tuple(addresses))


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to a checked address instead of resolving the host name again."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), min(self.timeout or 0, CONNECT_TIMEOUT))
        self.sock.settimeout(self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to a checked address; the certificate is verified against the host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), min(self.timeout or 0, CONNECT_TIMEOUT))
        raw.settimeout(self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float | None = None) -> Response:
    """POST ``body`` to ``url`` after checking it again (steps 1-4). Raises
    :class:`UnsafeDestination` for a refused URL and ``OSError`` (including timeouts and TLS errors)
    or ``http.client.HTTPException`` when the request fails."""
    target = check_url(url)
    limit = timeout if timeout is not None else conf.timeout()
    started = time.monotonic()
    last_error: OSError | None = None
    for address in target.addresses:
        connection: http.client.HTTPConnection
        if target.scheme == "https":
            connection = _PinnedHTTPSConnection(target.host, target.port, address, limit, ssl.create_default_context())
        else:
            connection = _PinnedHTTPConnection(target.host, target.port, address, limit)
        try:
            try:
                connection.connect()
            except (ConnectionRefusedError, TimeoutError) as exc:
                # Another address of the host may answer; anything else (TLS) is final.
                last_error = exc
                continue
            connection.request(
                "POST",
                target.path,
                body=body,
                headers={"User-Agent": USER_AGENT, "Content-Type": "application/json", **headers},
            )
            answer = connection.getresponse()
            data = answer.read(RESPONSE_MAX_BYTES)
            duration = int((time.monotonic() - started) * 1000)
            return Response(answer.status, data.decode("utf-8", "replace"), duration)
        finally:
            connection.close()
    assert last_error is not None
    raise last_error
