"""The fast MIME builder: the canonical message and awkward content parse back with the standard
library (policy.default) to exactly what was rendered, headers are encoded and folded within the
line limits, and caller headers are checked."""

from __future__ import annotations

import random
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from campaigns.benchmarks.render import canonical
from campaigns.models import Template
from campaigns.rendering import HeaderError, PreparedTemplate, Rendered, prepare

PROMOTIONAL = {
    "List-Unsubscribe": "<https://t.example.com/u/tok_3f9a1c>, <mailto:unsubscribe@t.example.com?subject=tok_3f9a1c>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


def parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None
    assert html is not None
    return text.get_content(), html.get_content()


@pytest.fixture(scope="module")
def prepared() -> PreparedTemplate:
    data = canonical()
    return prepare(data.template, data.rules)


def test_the_canonical_message_parses_back_exactly(prepared: PreparedTemplate) -> None:
    data = canonical()
    rendered = prepared.render(data.contact, {}, data.message)
    raw = prepared.build_mime(
        rendered,
        from_header=("Druckerei Müller", "news@example.com"),
        to=data.contact["email"],
        message_id_domain="mail.example.com",
        headers=PROMOTIONAL,
    )
    message = parse(raw)
    assert message.get_content_type() == "multipart/alternative"
    assert parts(message) == (rendered.text, rendered.html)
    assert "Hallo Jürgen Müller" in parts(message)[1]
    assert message["Subject"] == rendered.subject == "Hallo Jürgen, your monthly update"
    assert message["From"].addresses[0].display_name == "Druckerei Müller"
    assert message["From"].addresses[0].addr_spec == "news@example.com"
    assert message["To"] == "juergen.mueller@example.com"
    assert message["List-Unsubscribe"] == PROMOTIONAL["List-Unsubscribe"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Message-ID"].endswith("@mail.example.com>")
    assert message["Date"].datetime.tzinfo is not None
    assert not message.defects
    assert all(not part.defects for part in message.walk())


def test_lines_stay_within_rfc_5322_limits(prepared: PreparedTemplate) -> None:
    data = canonical()
    rendered = prepared.render({**data.contact, "first_name": "Jürgen " * 40}, {}, data.message)
    raw = prepared.build_mime(
        rendered,
        from_header="news@example.com",
        to="a@example.com",
        message_id_domain="example.com",
        headers=PROMOTIONAL,
    )
    assert max(len(line) for line in raw.split(b"\n")) <= 78
    assert raw.isascii()
    assert parse(raw)["Subject"] == rendered.subject


def test_crlf_line_endings_for_the_wire(prepared: PreparedTemplate) -> None:
    data = canonical()
    rendered = prepared.render(data.contact, {}, data.message)
    raw = prepared.build_mime(
        rendered, from_header="news@example.com", to="a@example.com", message_id_domain="x.de", linesep="\r\n"
    )
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    text, html = parts(parse(raw))
    assert (text.replace("\r\n", "\n"), html.replace("\r\n", "\n")) == (rendered.text, rendered.html)


def test_each_message_gets_its_own_message_id_unless_given(prepared: PreparedTemplate) -> None:
    rendered = Rendered(subject="s", preheader="", html="<p>x</p>", text="x")
    ids = {
        parse(prepared.build_mime(rendered, from_header="a@x.de", to="b@x.de", message_id_domain="x.de"))["Message-ID"]
        for _ in range(3)
    }
    assert len(ids) == 3
    given = prepared.build_mime(
        rendered, from_header="a@x.de", to="b@x.de", message_id_domain="x.de", headers={"Message-ID": "<m1@x.de>"}
    )
    assert parse(given)["Message-ID"] == "<m1@x.de>"
    assert given.count(b"Message-ID") == 1


AWKWARD = [
    "",
    "no newline at the end",
    "trailing spaces   \nand tabs\t\n",
    "=3D is not an escape, = neither\n",
    ".\n..\n.leading dots\n",
    "--=_xes_ looks like a boundary\n--\n",
    "x" * 500 + "\n" + "ü" * 300,
    "Café — Grüße € 😀 \u00a0nbsp\n\n\n",
    "From the start of a line\nFrom \n",
    "\x00\x01\x1b control\x7f characters\x0c\n",
    "line\u2028separator and \u0085 next line\n",
]


@pytest.mark.parametrize("body", AWKWARD)
def test_awkward_bodies_round_trip_exactly(body: str) -> None:
    prepared = prepare(Template(name="t", slug="t", subject="s", body="<p>{{ data.x }}</p>", text="{{ data.x }}"))
    rendered = Rendered(subject="s", preheader="", html=body + "<br>", text=body)
    raw = prepared.build_mime(rendered, from_header="a@x.de", to="b@x.de", message_id_domain="x.de")
    assert parts(parse(raw)) == (rendered.text, rendered.html)
    assert max(len(line) for line in raw.split(b"\n")) <= 78


def test_random_content_round_trips_exactly() -> None:
    alphabet = "abc XYZ 019 =.-_\t\n<>&\"' äöüß€😀\u00a0"
    prepared = prepare(Template(name="t", slug="t", subject="{{ data.s }}", body="x", text="x"))
    rng = random.Random(5)
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400)))
        subject = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        rendered = prepared.render({}, {"s": subject}, {})
        rendered = Rendered(subject=rendered.subject, preheader="", html=text[::-1], text=text)
        message = parse(prepared.build_mime(rendered, from_header="a@x.de", to="b@x.de", message_id_domain="x.de"))
        assert parts(message) == (rendered.text, rendered.html)
        assert str(message["Subject"] or "") == rendered.subject


@pytest.mark.parametrize(
    "subject",
    [
        "A plain subject",
        "A long ascii subject " * 8,
        "Grüße aus München — " * 6,
        "Looks like =?utf-8?q?an=20encoded?= word",
        "double  spaces  inside",
        "😀" * 40,
    ],
)
def test_subjects_are_encoded_and_folded_losslessly(subject: str) -> None:
    prepared = prepare(Template(name="t", slug="t", subject="{{ data.s }}", body="x", text="x"))
    rendered = prepared.render({}, {"s": subject}, {})
    raw = prepared.build_mime(rendered, from_header="a@x.de", to="b@x.de", message_id_domain="x.de")
    assert parse(raw)["Subject"] == subject.strip()
    assert max(len(line) for line in raw.split(b"\n")) <= 78


@pytest.mark.parametrize(
    "name",
    ["Plain Name", 'Quote " and \\ back', "Müller, Jürgen", "a@b <evil@x.de>", "=?utf-8?b?Zm9v?="],
)
def test_display_names_are_quoted_or_encoded(name: str) -> None:
    prepared = prepare(Template(name="t", slug="t", subject="s", body="x", text="x"))
    rendered = Rendered(subject="s", preheader="", html="x", text="x")
    message = parse(
        prepared.build_mime(rendered, from_header=(name, "a@x.de"), to=(name, "b@x.de"), message_id_domain="x.de")
    )
    assert [(a.display_name, a.addr_spec) for a in message["From"].addresses] == [(name, "a@x.de")]
    assert [(a.display_name, a.addr_spec) for a in message["To"].addresses] == [(name, "b@x.de")]


@pytest.mark.parametrize("header", ["Content-Type", "from", "MIME-Version", "Bad Name", "X:Y"])
def test_structural_or_malformed_headers_are_refused(header: str) -> None:
    prepared = prepare(Template(name="t", slug="t", subject="s", body="x", text="x"))
    rendered = Rendered(subject="s", preheader="", html="x", text="x")
    with pytest.raises(HeaderError):
        prepared.build_mime(
            rendered, from_header="a@x.de", to="b@x.de", message_id_domain="x.de", headers={header: "v"}
        )


@pytest.mark.parametrize(
    "address", ["not an address", "a@x.de, c@y.de", "a@x.de\r\nBcc: c@y.de", "a b@x.de", "a@x.de>"]
)
def test_bad_recipient_addresses_are_refused(address: str) -> None:
    prepared = prepare(Template(name="t", slug="t", subject="s", body="x", text="x"))
    rendered = Rendered(subject="s", preheader="", html="x", text="x")
    with pytest.raises(HeaderError):
        prepared.build_mime(rendered, from_header="a@x.de", to=address, message_id_domain="x.de")
