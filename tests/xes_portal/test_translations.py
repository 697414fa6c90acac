"""The German translation is complete, and the compiled catalogue matches the source."""

from __future__ import annotations

from pathlib import Path

import polib
from django.utils import translation

LOCALE = Path(__file__).resolve().parents[2] / "locale" / "de" / "LC_MESSAGES"


def test_every_message_has_a_german_translation() -> None:
    po = polib.pofile(str(LOCALE / "django.po"))

    missing = [entry.msgid for entry in po if not entry.translated() or entry.fuzzy]

    assert len(po) > 500
    assert missing == []


def test_the_compiled_catalogue_is_up_to_date() -> None:
    po = polib.pofile(str(LOCALE / "django.po"))
    mo = polib.mofile(str(LOCALE / "django.mo"))

    compiled = {(e.msgctxt, e.msgid): e.msgstr or e.msgstr_plural.get(0) for e in mo if e.msgid}
    source = {(e.msgctxt, e.msgid): e.msgstr or e.msgstr_plural.get(0) for e in po if e.translated()}

    assert compiled == source


def test_the_portal_speaks_german() -> None:
    with translation.override("de"):
        assert translation.gettext("Sender addresses") == "Absenderadressen"
        assert translation.pgettext("ledger entry kind", "Grant") == "Gutschrift"
