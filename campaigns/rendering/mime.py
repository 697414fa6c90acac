"""A fast MIME builder for rendered messages.

Building a message through :mod:`email.message` (what Django's ``EmailMessage`` does) costs
milliseconds, almost all of it in generic header and body machinery. Our messages always have the
same shape (multipart/alternative, text then HTML, UTF-8, quoted-printable), so we keep the static
parts as prebuilt bytes and only encode what changes per recipient:

* headers: the few per-recipient values, cleaned of control characters (a CR/LF from merge data can
  never start a new header) and folded or RFC 2047-encoded so no line exceeds 78 characters;
* bodies: quoted-printable, line by line, with the encoded form of lines that come from the
  template's static text computed once (:class:`QPEncoder`). Quoted-printable is line-local, so
  encoding line by line gives exactly the bytes of encoding the whole body.

The boundary starts with ``=_``, which cannot occur in quoted-printable output, so one boundary per
template is safe for every recipient.
"""

from __future__ import annotations

import binascii
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from email.utils import formatdate, parseaddr

__all__ = ["HeaderError", "MimeSkeleton", "QPEncoder", "clean_header_value", "format_address"]

MAX_LINE = 78  # RFC 5322 "SHOULD"; 998 is the hard limit
HARD_LINE = 998
# Bytes of UTF-8 per encoded word: base64 of 42 bytes is 56 characters, plus "=?utf-8?b??=" (12),
# so "Subject: " and a word, or a folding space and a word, stay within 78.
_WORD_BYTES = 42
_RESERVED_HEADERS = frozenset(
    {"from", "to", "subject", "date", "mime-version", "content-type", "content-transfer-encoding"}
)
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")
_PRINTABLE_ASCII = re.compile(r"^[ -~]*$")
_ATEXT_PHRASE = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ .]*$")
_ADDRESS = re.compile(r"^[!-~]+@[!-~]+$")

# Every control character (C0, DEL, C1) and the Unicode line/paragraph separators become a space.
_CONTROLS = {code: " " for code in [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}


class HeaderError(ValueError):
    """A header that cannot be written safely (bad name, address or an overlong token)."""


def clean_header_value(value: str) -> str:
    """The value with control characters (CR, LF, TAB, NUL, ...) replaced by spaces and the ends
    stripped: what a header can carry, and what :func:`email` parses back."""
    if value.isprintable() and value.isascii():
        return value.strip()
    return value.translate(_CONTROLS).strip()


def _encoded_words(value: str) -> list[str]:
    """RFC 2047 base64 words, never splitting a character across two words."""
    data = value.encode("utf-8", "replace")
    chunks: list[bytes] = []
    while len(data) > _WORD_BYTES:
        cut = _WORD_BYTES
        while data[cut] & 0xC0 == 0x80:  # a UTF-8 continuation byte: cut before its character
            cut -= 1
        chunks.append(data[:cut])
        data = data[cut:]
    chunks.append(data)
    return ["=?utf-8?b?" + binascii.b2a_base64(chunk, newline=False).decode("ascii") + "?=" for chunk in chunks]


def _fold_words(name: str, words: Iterable[str], separator: str, linesep: str) -> str:
    """``Name: w1 w2 ...`` folded before a word when the line would pass 78 characters."""
    lines: list[str] = []
    current = name + ":"
    for word in words:
        piece = (" " if current.endswith(":") else separator) + word
        if len(current) + len(piece) > MAX_LINE:
            lines.append(current)
            current = " " + word
        else:
            current += piece
        if len(current) > HARD_LINE:
            raise HeaderError(f"The {name} header has a part longer than {HARD_LINE} characters.")
    lines.append(current)
    return linesep.join(lines) + linesep


def unstructured_header(name: str, value: str, linesep: str) -> str:
    """A free-text header (Subject, custom headers), cleaned and folded or encoded."""
    value = clean_header_value(value)
    if _PRINTABLE_ASCII.match(value) and "=?" not in value and "  " not in value:
        if len(name) + 2 + len(value) <= MAX_LINE:
            return f"{name}: {value}{linesep}"
        if all(len(word) < HARD_LINE - 2 for word in value.split(" ")):
            return _fold_words(name, value.split(" "), " ", linesep)
    return _fold_words(name, _encoded_words(value), " ", linesep)


def format_address(address: str | tuple[str, str], linesep: str = "\n") -> str:
    """``Name <addr>`` for an address header: the display name quoted or RFC 2047-encoded as
    needed (control characters removed), the address checked to be one plain ASCII address."""
    if isinstance(address, tuple):
        name, addr = address
    elif "<" in address:
        name, addr = parseaddr(address)
    else:
        name, addr = "", address
    addr = addr.strip()
    if not _ADDRESS.match(addr) or any(c in addr for c in '<>,;"()'):
        raise HeaderError(f"Not a plain e-mail address: {addr!r}")
    name = clean_header_value(name)
    if not name:
        return addr
    if _ATEXT_PHRASE.match(name) and "  " not in name and "=?" not in name:
        phrase = name
    elif _PRINTABLE_ASCII.match(name) and "  " not in name and "=?" not in name:
        phrase = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        phrase = linesep.join(" " + w if i else w for i, w in enumerate(_encoded_words(name)))
    return f"{phrase} <{addr}>"


class QPEncoder:
    """Quoted-printable encoding of UTF-8 text, line by line, with the lines known in advance (the
    template's static text) encoded once. Only lines with personal data are encoded per message."""

    def __init__(self, static_text: str = "", linesep: bytes = b"\n", limit: int = 20_000) -> None:
        self.linesep = linesep
        self._cache: dict[str, bytes] = {}
        for line in static_text.split("\n"):
            if len(self._cache) >= limit:
                break
            if line not in self._cache:
                self._cache[line] = self._encode_line(line)

    def _encode_line(self, line: str) -> bytes:
        # istext=False: a stray CR is encoded, never a line break; soft breaks use our line ending.
        encoded = binascii.b2a_qp(line.encode("utf-8", "replace"), istext=False)
        if self.linesep != b"\n" and b"=\n" in encoded:
            encoded = encoded.replace(b"=\n", b"=" + self.linesep)
        return encoded

    def encode(self, text: str) -> bytes:
        """The body, with lines ending in the encoder's line ending; ``text`` uses ``\\n``."""
        get = self._cache.get
        encode_line = self._encode_line
        return self.linesep.join(
            [encoded if (encoded := get(line)) is not None else encode_line(line) for line in text.split("\n")]
        )


class _DateCache:
    """``Date:`` changes once a second; formatting it per message is wasted work."""

    second = -1
    value = ""

    @classmethod
    def now(cls) -> str:
        second = int(time.time())
        if second != cls.second:
            cls.value = formatdate(second, usegmt=True)
            cls.second = second
        return cls.value


class MimeSkeleton:
    """The static bytes of one template's messages, built once; :meth:`build` adds the rest."""

    def __init__(self, *, text_static: str = "", html_static: str = "", linesep: str = "\n") -> None:
        self.linesep = linesep
        self._linesep_bytes = linesep.encode("ascii")
        self.boundary = "=_xes_" + secrets.token_hex(12)
        nl = linesep
        self._middle = (
            f"MIME-Version: 1.0{nl}"
            f'Content-Type: multipart/alternative;{nl} boundary="{self.boundary}"{nl}{nl}'
            f"--{self.boundary}{nl}"
            f'Content-Type: text/plain; charset="utf-8"{nl}'
            f"Content-Transfer-Encoding: quoted-printable{nl}{nl}"
        ).encode("ascii")
        self._between = (
            f"{nl}--{self.boundary}{nl}"
            f'Content-Type: text/html; charset="utf-8"{nl}'
            f"Content-Transfer-Encoding: quoted-printable{nl}{nl}"
        ).encode("ascii")
        self._end = f"{nl}--{self.boundary}--{nl}".encode("ascii")
        self.text_encoder = QPEncoder(text_static, self._linesep_bytes)
        self.html_encoder = QPEncoder(html_static, self._linesep_bytes)
        self._from_cache: dict[object, str] = {}

    def _from(self, from_header: str | tuple[str, str]) -> str:
        cached = self._from_cache.get(from_header)
        if cached is None:
            cached = f"From: {format_address(from_header, self.linesep)}{self.linesep}"
            if len(self._from_cache) < 100:
                self._from_cache[from_header] = cached
        return cached

    def build(
        self,
        *,
        subject: str,
        text: str,
        html: str,
        from_header: str | tuple[str, str],
        to: str | tuple[str, str],
        message_id_domain: str,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """One message's bytes. ``text`` and ``html`` use ``\\n`` line endings."""
        nl = self.linesep
        message_id = None
        extra: list[str] = []
        if headers:
            for name, value in headers.items():
                if not _HEADER_NAME.match(name) or name.lower() in _RESERVED_HEADERS:
                    raise HeaderError(f"This header cannot be set here: {name!r}")
                if name.lower() == "message-id":
                    message_id = clean_header_value(value)
                    continue
                extra.append(unstructured_header(name, value, nl))
        if message_id is None:
            message_id = f"<{secrets.token_hex(16)}@{clean_header_value(message_id_domain).replace(' ', '')}>"
        head = (
            self._from(from_header)
            + f"To: {format_address(to, nl)}{nl}"
            + unstructured_header("Subject", subject, nl)
            + f"Date: {_DateCache.now()}{nl}"
            + f"Message-ID: {message_id}{nl}"
            + "".join(extra)
        )
        return b"".join(
            (
                head.encode("utf-8"),
                self._middle,
                self.text_encoder.encode(text),
                self._between,
                self.html_encoder.encode(html),
                self._end,
            )
        )
