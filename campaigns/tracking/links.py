"""Link rewriting at build time, the tracking host of a message, and what counts as a safe URL.

For a message with tracking on (:func:`campaigns.models.tracking_enabled`), :func:`rewrite_html`
replaces each ``href`` of an ``<a>`` element in the HTML part by ``<base>/t/c/<token>`` and adds an
open pixel ``<base>/t/o/<token>`` before ``</body>``. Left alone: anything but absolute ``http``
and ``https`` URLs (``mailto:``, ``tel:``, ``#anchors``, relative links), the unsubscribe link (it
must work without us, and scanners must not count as clicks there), links already pointing at a
tracking endpoint, links with a ``data-xes-notrack`` attribute, and URLs that are not safe to
redirect to (:func:`is_safe_url`). The text part keeps its links as they are.

Each destination is a :class:`~campaigns.models.TrackedLink` of the organisation; a per-process
:class:`LinkIds` cache answers repeated URLs (the same links in every message of a campaign)
without touching the database, and creates missing ones in one statement per message.

``<base>`` is the sending domain's branded tracking host when its CNAME is verified (the domain
wizard's "tracking" step), else the portal's ``SITE_URL``.
"""

from __future__ import annotations

import html as html_lib
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.encoding import iri_to_uri
from django.utils.http import MAX_URL_REDIRECT_LENGTH

from campaigns.models import TrackedLink, url_hash
from campaigns.tracking import tokens

__all__ = [
    "LinkIds",
    "MarkedLinks",
    "Tracking",
    "apply_marks",
    "is_safe_url",
    "mark_links",
    "restore_marks",
    "rewrite_html",
    "tracking_base_url",
]

MAX_URL_CHARS = 8000
# An <a> start tag; in it the href attribute (not data-href) is found with str.find (a regex with
# look-behind tried at every position of long, style-inlined tags cost twice the whole rewrite);
# _VALUE then reads its value: group 1, 2 or 3 for double-, single- or unquoted.
_ANCHOR = re.compile(r"<[aA]\s[^>]*>")
_VALUE = re.compile(r"""href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.I)
_BEFORE_ATTRIBUTE = frozenset(" \t\r\n\"'/")
_NOTRACK = re.compile(r"\sdata-xes-notrack\b", re.I)
_UNSAFE_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


def is_safe_url(url: str) -> bool:
    """Whether a click may redirect to ``url``: absolute http(s) with a host, no user info, no
    backslashes, whitespace or control characters (which browsers read differently than parsers)."""
    if not url or len(url) > MAX_URL_CHARS or _UNSAFE_CHARS.search(url):
        return False
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    if parts.scheme.lower() not in ("http", "https") or not hostname or "@" in parts.netloc:
        return False
    # Django refuses to redirect to longer Location values (after IRI encoding).
    return len(iri_to_uri(url)) <= MAX_URL_REDIRECT_LENGTH


@dataclass
class Tracking:
    """How to track one message: ``base`` is ``https://host`` without a trailing slash."""

    base: str
    message_id: int
    organisation_id: int
    link_ids: Callable[[int, list[str]], dict[str, int]]
    skip_prefixes: tuple[str, ...] = field(default_factory=tuple)

    def click_url(self, link_id: int) -> str:
        return f"{self.base}/t/c/{tokens.click_token(self.message_id, link_id, self.organisation_id)}"

    def open_url(self) -> str:
        return f"{self.base}/t/o/{tokens.open_token(self.message_id)}"


_decisions: dict[str, str | None] = {}
DECISIONS_MAX = 100_000


def _destination(raw: str) -> str | None:
    """The URL an href value names, if it may be tracked at all (cached per process: a campaign's
    messages repeat the same values)."""
    known = _decisions.get(raw, False)
    if known is not False:
        return known  # type: ignore[return-value]
    url = html_lib.unescape(raw).strip() if "&" in raw else raw.strip()
    result = url if url[:8].lower().startswith(("http://", "https://")) and is_safe_url(url) else None
    if len(_decisions) >= DECISIONS_MAX:
        _decisions.clear()
    _decisions[raw] = result
    return result


def _href(document: str, start: int, end: int) -> re.Match[str] | None:
    """The href attribute of the tag at ``document[start:end]`` (``_VALUE`` match), if any."""
    at = document.find("href", start, end)
    while at >= 0 and document[at - 1] not in _BEFORE_ATTRIBUTE:
        at = document.find("href", at + 4, end)
    if at < 0:
        lowered = document[start:end].lower()  # HREF, Href: rare
        at = lowered.find("href")
        while at >= 0 and lowered[at - 1] not in _BEFORE_ATTRIBUTE:
            at = lowered.find("href", at + 4)
        if at < 0:
            return None
        at += start
    return _VALUE.match(document, at, end)


def rewrite_html(document: str, tracking: Tracking) -> str:
    """The HTML with tracked links and the open pixel (see the module docstring)."""
    found: list[tuple[int, int, str]] = []  # (start, end, url) of each href value to replace
    skip = tracking.skip_prefixes
    for anchor in _ANCHOR.finditer(document):
        match = _href(document, anchor.start(), anchor.end())
        if match is None:
            continue
        group = 1 if match.start(1) >= 0 else 2 if match.start(2) >= 0 else 3
        url = _destination(match.group(group))
        if url is None or (skip and url.startswith(skip)):
            continue
        tag = anchor.group()
        if "notrack" in tag.lower() and _NOTRACK.search(tag):
            continue
        found.append((match.start(group), match.end(group), url))
    pieces: list[str] = []
    position = 0
    if found:
        ids = tracking.link_ids(tracking.organisation_id, list(dict.fromkeys(url for _s, _e, url in found)))
        prefix = f"{tracking.base}/t/c/"
        signed = tokens.click_tokens(tracking.message_id, tracking.organisation_id, list(dict.fromkeys(ids.values())))
        for start, end, url in found:
            pieces.append(document[position:start])
            pieces.append(prefix + signed[ids[url]])
            position = end
    pieces.append(document[position:])
    return _with_pixel("".join(pieces), tracking)


# --- marking links once per template ----------------------------------------------------------------
#
# Finding the links in every rendered message costs more than rendering it. So the template's HTML
# source is scanned once (:func:`mark_links`): each trackable static href value becomes a marker
# ``\x1e<nonce><index>\x1f`` and each href value with Liquid in it is wrapped in
# ``\x1d<nonce> ... \x1c<nonce>``. Messages rendered from the marked source then only need the
# markers replaced (:func:`apply_marks`, one scan for a control character), or put back as they
# were when the message is not tracked (:func:`restore_marks`). The nonce is random per prepared
# template, so merge data cannot forge a marker.


@dataclass(frozen=True)
class MarkedLinks:
    """A template's HTML source with its links marked, and what each static marker stands for."""

    source: str
    static: tuple[tuple[str, str], ...]  # (href value as written, URL) by marker index
    nonce: str


def mark_links(source: str) -> MarkedLinks | None:
    """The marked form of an HTML (Liquid) source; ``None`` when it has no link to track."""
    import secrets

    nonce = secrets.token_hex(4)
    pieces: list[str] = []
    static: list[tuple[str, str]] = []
    position = 0
    for anchor in _ANCHOR.finditer(source):
        match = _href(source, anchor.start(), anchor.end())
        if match is None:
            continue
        tag = anchor.group()
        if "notrack" in tag.lower() and _NOTRACK.search(tag):
            continue
        group = 1 if match.start(1) >= 0 else 2 if match.start(2) >= 0 else 3
        raw = match.group(group)
        if "{{" in raw or "{%" in raw:
            if group == 3:
                continue  # an unquoted value with Liquid: its end is not known before rendering
            replacement = f"\x1d{nonce}{raw}\x1c{nonce}"
        else:
            if _destination(raw) is None:
                continue
            replacement = f"\x1e{nonce}{len(static)}\x1f"
            static.append((raw, _destination(raw) or ""))
        pieces.append(source[position : match.start(group)])
        pieces.append(replacement)
        position = match.end(group)
    if not pieces:
        return None
    pieces.append(source[position:])
    return MarkedLinks(source="".join(pieces), static=tuple(static), nonce=nonce)


def _split(html: str, marked: MarkedLinks) -> tuple[list[str], list[tuple[str, str | None]]]:
    """A message rendered from the marked source, cut at its markers: the texts between them, and
    for each marker (value as rendered, URL to track or None); ``len(texts) == len(links) + 1``.

    One ``str.split`` on the nonce does the scanning (a regex alternation over 20 KB cost three
    times the rest of the work)."""
    nonce, static = marked.nonce, marked.static
    parts = html.split(nonce)
    texts: list[str] = []
    links: list[tuple[str, str | None]] = []
    text = parts[0]
    index, count = 1, len(parts)
    while index < count:
        kind = text[-1:]
        part = parts[index]
        if kind == "\x1e":
            cut = part.find("\x1f")
            number = part[:cut] if cut > 0 else ""
            if number.isdigit() and int(number) < len(static):
                texts.append(text[:-1])
                links.append(static[int(number)])
                text = part[cut + 1 :]
                index += 1
                continue
        elif kind == "\x1d" and index + 1 < count and part.endswith("\x1c"):
            raw = part[:-1]
            texts.append(text[:-1])
            links.append((raw, _destination(raw)))
            text = parts[index + 1]
            index += 2
            continue
        text = text + nonce + part  # not one of our markers (cannot happen unless the nonce is guessed)
        index += 1
    texts.append(text)
    return texts, links


def _join(texts: list[str], values: list[str]) -> str:
    pieces = [texts[0]]
    for value, text in zip(values, texts[1:], strict=True):
        pieces += [value, text]
    return "".join(pieces)


def restore_marks(html: str, marked: MarkedLinks) -> str:
    """A message rendered from the marked source, with every link as written (not tracked)."""
    texts, links = _split(html, marked)
    return _join(texts, [raw for raw, _url in links])


def apply_marks(html: str, marked: MarkedLinks, tracking: Tracking) -> str:
    """A message rendered from the marked source, with tracked links and the open pixel: the same
    result as :func:`rewrite_html` on the unmarked message."""
    texts, links = _split(html, marked)
    skip = tracking.skip_prefixes
    if skip:
        links = [(raw, None if url is None or url.startswith(skip) else url) for raw, url in links]
    urls = list(dict.fromkeys(url for _raw, url in links if url is not None))
    if not urls:
        return _with_pixel(_join(texts, [raw for raw, _url in links]), tracking)
    ids = tracking.link_ids(tracking.organisation_id, urls)
    signed = tokens.click_tokens(tracking.message_id, tracking.organisation_id, list(dict.fromkeys(ids.values())))
    prefix = f"{tracking.base}/t/c/"
    values = [raw if url is None else prefix + signed[ids[url]] for raw, url in links]
    return _with_pixel(_join(texts, values), tracking)


def _with_pixel(document: str, tracking: Tracking) -> str:
    pixel = (
        f'<img src="{tracking.open_url()}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0;" />'
    )
    cut = max(document.rfind("</body"), document.rfind("</BODY"), document.rfind("</Body"))
    if cut < 0:
        return document + pixel
    return document[:cut] + pixel + document[cut:]


class LinkIds:
    """Per-process cache of :class:`~campaigns.models.TrackedLink` ids by (organisation, URL).

    Missing links are created with one ``INSERT ... ON CONFLICT DO NOTHING`` and read back with one
    ``SELECT``, so concurrent workers agree on one row per URL. The cache is bounded."""

    MAX_ENTRIES = 200_000

    def __init__(self) -> None:
        self._ids: dict[tuple[int, str], int] = {}

    def __call__(self, organisation_id: int, urls: list[str]) -> dict[str, int]:
        result: dict[str, int] = {}
        missing: list[str] = []
        for url in urls:
            known = self._ids.get((organisation_id, url))
            if known is None:
                missing.append(url)
            else:
                result[url] = known
        if missing:
            result.update(self._load(organisation_id, missing))
        return result

    def _load(self, organisation_id: int, urls: list[str]) -> dict[str, int]:
        by_hash = {url_hash(url): url for url in urls}
        rows: Iterable[tuple[str, int]]
        if connection.vendor == "postgresql":
            # One round trip: personalised links are new for every message. The no-op update makes
            # RETURNING include rows that existed (or that a concurrent worker just inserted).
            with connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {TrackedLink._meta.db_table} (organisation_id, url, url_hash, created_at) "
                    "SELECT %s, v.url, v.digest, %s FROM unnest(%s::text[], %s::text[]) AS v(url, digest) "
                    "ON CONFLICT (organisation_id, url_hash) DO UPDATE SET url_hash = EXCLUDED.url_hash "
                    "RETURNING url_hash, id",
                    [organisation_id, timezone.now(), list(by_hash.values()), list(by_hash)],
                )
                rows = cursor.fetchall()
        else:
            TrackedLink.objects.bulk_create(
                [
                    TrackedLink(organisation_id=organisation_id, url=url, url_hash=digest)
                    for digest, url in by_hash.items()
                ],
                ignore_conflicts=True,
            )
            rows = TrackedLink.objects.filter(organisation_id=organisation_id, url_hash__in=list(by_hash)).values_list(
                "url_hash", "pk"
            )
        if len(self._ids) + len(urls) > self.MAX_ENTRIES:
            self._ids.clear()
        found: dict[str, int] = {}
        for digest, pk in rows:
            url = by_hash[digest]
            found[url] = pk
            self._ids[(organisation_id, url)] = pk
        return found


# --- the tracking host --------------------------------------------------------------------------


_hosts: dict[tuple[int, str], tuple[str, float]] = {}
HOST_CACHE_SECONDS = 60.0


def _scheme() -> str:
    return urlsplit(settings.SITE_URL).scheme or "https"


def branded_host(sending_account_id: int, domain: str) -> str:
    """The verified branded tracking host of the account's sending ``domain`` ("" if none)."""
    from deliverability.models import DnsRecord, Domain

    good = [str(status) for status in DnsRecord.GOOD]
    row = (
        Domain.objects.filter(
            sending_account_id=sending_account_id,
            name=domain.lower(),
            verified_at__isnull=False,
            records__kind=DnsRecord.Kind.TRACKING,
            records__status__in=good,
        )
        .exclude(tracking_subdomain="")
        .values_list("tracking_subdomain", "name")
        .first()
    )
    return f"{row[0]}.{row[1]}".lower() if row else ""


def tracking_base_url(sending_account_id: int, sender_email: str) -> str:
    """Where a message's tracking links point: the branded host if verified, else ``SITE_URL``
    (cached per process for a minute)."""
    domain = sender_email.rpartition("@")[2].lower()
    key = (sending_account_id, domain)
    cached = _hosts.get(key)
    now = time.monotonic()
    if cached is not None and now - cached[1] < HOST_CACHE_SECONDS:
        return cached[0]
    host = branded_host(sending_account_id, domain)
    base = f"{_scheme()}://{host}" if host else settings.SITE_URL.rstrip("/")
    _hosts[key] = (base, now)
    return base


def verified_tracking_hosts() -> set[str]:
    """Every verified branded tracking host (the hosts the tracking endpoints answer on)."""
    from deliverability.models import DnsRecord, Domain

    good = [str(status) for status in DnsRecord.GOOD]
    rows: Iterable[tuple[str, str]] = (
        Domain.objects.filter(
            verified_at__isnull=False, records__kind=DnsRecord.Kind.TRACKING, records__status__in=good
        )
        .exclude(tracking_subdomain="")
        .values_list("tracking_subdomain", "name")
        .distinct()
    )
    return {f"{sub}.{name}".lower() for sub, name in rows}


def clear_caches() -> None:
    """Forget cached hosts and link decisions (tests, and after a domain's tracking record changes)."""
    _hosts.clear()
    _decisions.clear()
