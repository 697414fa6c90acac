"""A real authoritative DNS server for tests: dnslib's server on 127.0.0.1 (UDP and TCP on one
random free port) answering from zones given as Python data.

Zones map a name to its records::

    server.set_zones({
        "example.com": [txt("v=spf1 include:amazonses.com ~all"), mx("feedback-smtp.example", 10)],
        "sel._domainkey.example.com": [cname("sel.dkim.amazonses.com")],
    })

It answers like an authoritative server: records of the asked type (following CNAMEs it knows),
NOERROR without answers for a name that exists without that type (or has names below it),
NXDOMAIN for everything else. Names at or below ``timeout.test`` are never answered (the client
times out) and names at or below ``servfail.test`` get SERVFAIL; :meth:`TestDnsServer.drop` and
:meth:`TestDnsServer.servfail` make any other name misbehave the same way.

Zone helpers (``txt``, ``cname``, ``mx``, ``a``, ``correct_zone``) are plain functions so that
other test modules (the domain wizard, the browser test) can build zones too.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RR, TXT, A, DNSError, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

TTL = 60
TIMEOUT_ZONE = "timeout.test"
SERVFAIL_ZONE = "servfail.test"
# A minimal SPF record for include targets that a test does not care about.
STUB_SPF = "v=spf1 ip4:192.0.2.0/24 -all"


@dataclass(frozen=True)
class Rec:
    """One test record. ``value`` is the TXT text (a list to choose the character-strings
    yourself), the CNAME/MX target or the address."""

    rtype: str
    value: str | tuple[str, ...]
    priority: int = 10


Zones = dict[str, list[Rec]]


def txt(value: str | Iterable[str]) -> Rec:
    """A TXT record; a long string is cut into 255-byte character-strings, an iterable is used as
    the character-strings as given (to test how a record split by hand is joined)."""
    return Rec("TXT", value if isinstance(value, str) else tuple(value))


def cname(target: str) -> Rec:
    return Rec("CNAME", target)


def mx(host: str, priority: int = 10) -> Rec:
    return Rec("MX", host, priority)


def a(address: str) -> Rec:
    return Rec("AAAA" if ":" in address else "A", address)


def _key(name: str) -> str:
    return name.rstrip(".").lower()


def _expected_fields(record: Any) -> tuple[str, str, str, int | None]:
    """(name, rtype, value, priority) of a tuple or of anything with those attributes (a DnsRecord)."""
    if isinstance(record, tuple):
        name, rtype, value, *rest = record
        return name, rtype, value, (rest[0] if rest else None)
    return record.name, record.rtype, record.value, record.priority


def correct_zone(records: Iterable[Any], zones: Mapping[str, Iterable[Rec]] | None = None) -> Zones:
    """Zones that publish every expected record exactly, for a domain whose set-up is complete.

    ``records`` are ``(name, rtype, value, priority)`` tuples or objects with those attributes
    (``DnsRecord`` rows). Each ``include:`` target of a published SPF record that the zones do
    not define gets a minimal SPF record, as a real provider's would exist. ``zones`` are merged
    in first (for example, other records of the domain)."""
    result: Zones = {_key(name): list(recs) for name, recs in (zones or {}).items()}
    for record in records:
        name, rtype, value, priority = _expected_fields(record)
        rtype = rtype.upper()
        rec = Rec(rtype, value, priority if priority is not None else 10)
        result.setdefault(_key(name), []).append(rec)
    for recs in list(result.values()):
        for rec in recs:
            if rec.rtype == "TXT" and isinstance(rec.value, str) and rec.value.lower().startswith("v=spf1"):
                for word in rec.value.split():
                    if word.lower().startswith(("include:", "+include:")):
                        target = _key(word.split(":", 1)[1])
                        if target not in result:
                            result[target] = [txt(STUB_SPF)]
    return result


def _chunks(value: str) -> list[bytes]:
    data = value.encode("utf-8")
    return [data[start : start + 255] for start in range(0, len(data), 255)] or [b""]


def _rdata(rec: Rec) -> Any:
    if rec.rtype == "TXT":
        strings = _chunks(rec.value) if isinstance(rec.value, str) else [s.encode() for s in rec.value]
        return TXT(strings)
    value = str(rec.value)
    if rec.rtype == "CNAME":
        return CNAME(value.rstrip(".") + ".")
    if rec.rtype == "MX":
        return MX(value.rstrip(".") + ".", rec.priority)
    if rec.rtype == "A":
        return A(value)
    if rec.rtype == "AAAA":
        return AAAA(value)
    raise ValueError(f"unsupported test record type {rec.rtype}")


class _Drop(DNSError):
    """Raised by the resolver to send no answer at all (dnslib's handler swallows DNSError)."""


class ZoneResolver(BaseResolver):  # type: ignore[misc]
    """Answers from the current zones; thread-safe because zones are replaced, never mutated."""

    def __init__(self) -> None:
        self.zones: Zones = {}
        self.dropped: frozenset[str] = frozenset({TIMEOUT_ZONE})
        self.failing: frozenset[str] = frozenset({SERVFAIL_ZONE})
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    @staticmethod
    def _under(name: str, suffixes: Iterable[str]) -> bool:
        return any(name == suffix or name.endswith("." + suffix) for suffix in suffixes)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        qname = _key(str(request.q.qname))
        qtype = QTYPE[request.q.qtype]
        with self._lock:
            self.queries.append((qname, qtype))
        if self._under(qname, self.dropped):
            raise _Drop("dropped on purpose")
        reply = request.reply()
        if self._under(qname, self.failing):
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        zones = self.zones
        name = qname
        for _hop in range(8):  # follow CNAMEs inside our data, as a recursive resolver would
            records = zones.get(name)
            if records is None:
                # A name with names below it exists (an "empty non-terminal"): NOERROR, no answers.
                if not any(other.endswith("." + name) for other in zones):
                    reply.header.rcode = RCODE.NXDOMAIN
                return reply
            matching = [rec for rec in records if rec.rtype == qtype]
            aliases = [rec for rec in records if rec.rtype == "CNAME"]
            if matching or not aliases or qtype == "CNAME":
                for rec in matching:
                    reply.add_answer(RR(name + ".", getattr(QTYPE, rec.rtype), rdata=_rdata(rec), ttl=TTL))
                return reply
            alias = aliases[0]
            reply.add_answer(RR(name + ".", QTYPE.CNAME, rdata=_rdata(alias), ttl=TTL))
            name = _key(str(alias.value))
        return reply


class TestDnsServer:
    """dnslib's UDP and TCP servers on one free port of 127.0.0.1, answering from Python zones."""

    __test__ = False  # not a test class, despite the name

    def __init__(self) -> None:
        self.resolver = ZoneResolver()
        self.host = "127.0.0.1"
        self._servers: list[DNSServer] = []
        self.port = 0

    @property
    def address(self) -> str:
        """The ``DNS_NAMESERVERS`` entry for this server."""
        return f"{self.host}:{self.port}"

    def start(self) -> TestDnsServer:
        logger = DNSLogger("-recv,-send,-request,-reply,-truncated,-error,-data", prefix=False)
        for _attempt in range(20):
            udp = DNSServer(self.resolver, address=self.host, port=0, logger=logger)
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(self.resolver, address=self.host, port=port, tcp=True, logger=logger)
            except OSError:  # the TCP side of that port is taken: try another
                udp.server.server_close()
                continue
            self.port = port
            self._servers = [udp, tcp]
            for server in self._servers:
                server.start_thread()
            return self
        raise RuntimeError("no free port for the test DNS server")

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()
        self._servers = []

    # Zones

    def set_zones(self, zones: Mapping[str, Iterable[Rec]]) -> None:
        """Replace everything the server publishes."""
        self.resolver.zones = {_key(name): list(records) for name, records in zones.items()}

    def add(self, name: str, *records: Rec) -> None:
        """Publish more records at ``name``, keeping the rest."""
        zones = dict(self.resolver.zones)
        zones[_key(name)] = [*zones.get(_key(name), []), *records]
        self.resolver.zones = zones

    def remove(self, name: str, rtype: str | None = None) -> None:
        """Unpublish the records at ``name`` (only those of ``rtype`` when given)."""
        zones = dict(self.resolver.zones)
        kept = [rec for rec in zones.pop(_key(name), []) if rtype is not None and rec.rtype != rtype.upper()]
        if kept:
            zones[_key(name)] = kept
        self.resolver.zones = zones

    def drop(self, *names: str) -> None:
        """Never answer queries at or below ``names`` (the client times out)."""
        self.resolver.dropped = self.resolver.dropped | {_key(name) for name in names}

    def servfail(self, *names: str) -> None:
        """Answer SERVFAIL for queries at or below ``names``."""
        self.resolver.failing = self.resolver.failing | {_key(name) for name in names}

    def reset(self) -> None:
        """No zones, only the built-in timeout and SERVFAIL zones misbehave, no query log."""
        self.resolver.zones = {}
        self.resolver.dropped = frozenset({TIMEOUT_ZONE})
        self.resolver.failing = frozenset({SERVFAIL_ZONE})
        self.resolver.queries = []

    @property
    def queries(self) -> list[tuple[str, str]]:
        """(name, type) of every query received since the last reset."""
        return list(self.resolver.queries)


_shared: TestDnsServer | None = None
_shared_lock = threading.Lock()


def shared_server() -> TestDnsServer:
    """The one server of this test process, started on first use (any conftest can wrap it in a
    fixture; zones are reset by the function-level fixtures)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = TestDnsServer().start()
            atexit.register(_shared.stop)
        return _shared
