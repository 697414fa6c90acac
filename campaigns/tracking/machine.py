"""Machine opens and clicks: requests that no person caused.

Opens and clicks by machines are stored, flagged (``MessageEvent.machine``) with the reason in
``data["machine"]``, and kept out of "unique opens" by default. Three kinds of signal:

1. **who asked** (:func:`machine_reason`, at request time): privacy proxies that fetch every image
   of every message (Apple Mail Privacy Protection: the bare user agent ``Mozilla/5.0`` and Apple's
   own 17.0.0.0/8; Google's and Yahoo's image proxies by their user agents), link scanners of mail
   security gateways (by user agent, and Microsoft's Exchange Online Protection ranges, where Safe
   Links checks links), and HTTP libraries, crawlers and link-preview bots;
2. **when** (:func:`too_soon`): within :data:`PREFETCH_WINDOW` of the message being sent or
   delivered, which no reader manages;
3. **how many** (:func:`bursts`): one message's links clicked :data:`BURST_LINKS` or more at a time
   within one second, which is a scanner following every link.

The lists are deliberately short and documented; more networks can be added with the setting
``TRACKING_MACHINE_NETWORKS`` (a list of CIDR strings).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings

PREFETCH_WINDOW = timedelta(seconds=2)
BURST_LINKS = 3

APPLE_MPP = "apple_mpp"
GOOGLE_PROXY = "google_proxy"
YAHOO_PROXY = "yahoo_proxy"
SCANNER = "scanner"
BOT = "bot"
NO_AGENT = "no_agent"
PREFETCH = "prefetch"
BURST = "burst"

# (substring of the lower-cased user agent, reason); first match wins.
_AGENTS: tuple[tuple[str, str], ...] = (
    ("googleimageproxy", GOOGLE_PROXY),
    ("ggpht.com", GOOGLE_PROXY),
    ("yahoomailproxy", YAHOO_PROXY),
    # Security gateways that open or follow links before delivery.
    ("barracuda", SCANNER),
    ("mimecast", SCANNER),
    ("proofpoint", SCANNER),
    ("ppops", SCANNER),
    ("messagelabs", SCANNER),
    ("symantec", SCANNER),
    ("trendmicro", SCANNER),
    ("trend micro", SCANNER),
    ("sophos", SCANNER),
    ("fireeye", SCANNER),
    ("forcepoint", SCANNER),
    ("zscaler", SCANNER),
    ("ironport", SCANNER),
    ("cisco", SCANNER),
    ("existence discovery", SCANNER),  # Microsoft Office checking that a link exists
    # Libraries, crawlers, previews.
    ("bot", BOT),
    ("crawler", BOT),
    ("spider", BOT),
    ("facebookexternalhit", BOT),
    ("headlesschrome", BOT),
    ("phantomjs", BOT),
    ("python-", BOT),
    ("curl/", BOT),
    ("wget/", BOT),
    ("go-http-client", BOT),
    ("java/", BOT),
    ("okhttp", BOT),
    ("libwww", BOT),
    ("httpclient", BOT),
    ("axios/", BOT),
    ("node-fetch", BOT),
    ("scrapy", BOT),
)
_AGENT_RE = re.compile("|".join(re.escape(needle) for needle, _reason in _AGENTS))
_AGENT_REASON = dict(_AGENTS)

# Networks whose requests are machines (operator-published or registry allocations).
_NETWORKS: tuple[tuple[str, str], ...] = (
    ("17.0.0.0/8", APPLE_MPP),  # Apple's own allocation: Mail Privacy Protection prefetches
    ("66.249.80.0/20", GOOGLE_PROXY),  # Google's image proxy for Gmail
    ("40.92.0.0/15", SCANNER),  # Exchange Online Protection (Microsoft's published ranges)
    ("40.107.0.0/16", SCANNER),
    ("52.100.0.0/14", SCANNER),
    ("104.47.0.0/17", SCANNER),
)


@lru_cache(maxsize=1)
def _networks() -> tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]:
    extra = [(cidr, SCANNER) for cidr in getattr(settings, "TRACKING_MACHINE_NETWORKS", [])]
    return tuple((ipaddress.ip_network(cidr, strict=False), reason) for cidr, reason in (*_NETWORKS, *extra))


def agent_reason(user_agent: str) -> str:
    """The machine reason a user agent alone gives ("" when it looks like a person's mail client)."""
    agent = user_agent.strip()
    if not agent:
        return NO_AGENT
    if agent == "Mozilla/5.0":
        return APPLE_MPP  # Apple's prefetcher sends exactly this; every real client says more
    match = _AGENT_RE.search(agent.lower())
    return _AGENT_REASON[match.group()] if match else ""


def address_reason(ip: str) -> str:
    """The machine reason of a client address ("" for any other or unparsable address)."""
    if not ip:
        return ""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    for network, reason in _networks():
        if address.version == network.version and address in network:
            return reason
    return ""


def machine_reason(user_agent: str, ip: str) -> str:
    """Why an open or click came from a machine, judged by who asked ("" when nothing says so)."""
    return agent_reason(user_agent) or address_reason(ip)


def too_soon(at: datetime, sent_at: datetime | None) -> bool:
    """An open or click within :data:`PREFETCH_WINDOW` after the message was sent (or delivered)."""
    return sent_at is not None and timedelta(0) <= at - sent_at < PREFETCH_WINDOW


def bursts(clicks: Iterable[tuple[int, int | None, datetime]]) -> set[int]:
    """Of ``(index, link_id, at)`` clicks of one message, the indexes that belong to a burst:
    :data:`BURST_LINKS` or more different links within one second."""
    ordered = sorted(clicks, key=lambda click: click[2])
    flagged: set[int] = set()
    start = 0
    for end in range(len(ordered)):
        while ordered[end][2] - ordered[start][2] >= timedelta(seconds=1):
            start += 1
        window = ordered[start : end + 1]
        if len({link for _index, link, _at in window}) >= BURST_LINKS:
            flagged.update(index for index, _link, _at in window)
    return flagged
