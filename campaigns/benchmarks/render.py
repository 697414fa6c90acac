"""Render + MIME throughput on the canonical message of ``../shared/bench/`` (see its README).

``run()`` measures, in one process and one run, messages per second on one core for

(a) our path: the template prepared once, then per recipient ``render`` + ``build_mime``;
(b) Django's path on the same rendered content: ``EmailMultiAlternatives(...).message().as_bytes()``;

and reports their ratio. The contact varies per recipient (a counter in ``email`` and
``tracking_token``) so nothing can be cached across recipients. The canonical files use bare names
(``{{ first_name }}``, ``{% if vip %}``); our templates see ``contact``, ``rules``, ``data`` and
``message``, so :func:`canonical` rewrites the names, and expresses ``rules.json`` as our rules.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from campaigns.models import Rule, Template
from campaigns.rendering import prepare

__all__ = ["BENCH_DIR", "Canonical", "canonical", "format_table", "run"]

# A copy of ../shared/bench/ (the canonical benchmark message), so tests and CI need only this repo.
BENCH_DIR = Path(__file__).resolve().parent / "canonical"
GOAL_PER_CORE = 4000
GOAL_RATIO = 10
# rules.json, in our rule syntax: a condition and a computed value (Liquid over contact fields).
RULES = {
    "vip": (Rule.Kind.CONDITION, "points > 100"),
    "greeting": (Rule.Kind.VALUE, "{% if country == 'DE' %}Hallo{% else %}Hello{% endif %}"),
}
_MARKUP = re.compile(r"{{.*?}}|{%.*?%}", re.S)
_STRING_OR_NAME = re.compile(r"\"[^\"]*\"|'[^']*'|(?<![\w.])([a-z_][a-z0-9_]*)\b")
MESSAGE_KEYS = ("unsubscribe_url",)


@dataclass
class Canonical:
    template: Template
    rules: list[Rule]
    contact: dict[str, Any]
    message: dict[str, str]


def _namespaced(source: str, contact_keys: set[str]) -> str:
    """Rewrite bare names in Liquid markup to our namespaces (``first_name`` → ``contact.first_name``)."""

    def name(match: re.Match[str]) -> str:
        word = match.group(1)
        if word is None:
            return match.group()
        if word in RULES:
            return f"rules.{word}"
        if word in MESSAGE_KEYS:
            return f"message.{word}"
        if word in contact_keys:
            return f"contact.{word}"
        return word

    return _MARKUP.sub(lambda m: _STRING_OR_NAME.sub(name, m.group()), source)


def canonical(bench_dir: Path = BENCH_DIR) -> Canonical:
    """The canonical message as an (unsaved) template, its two rules, the contact and message links."""
    raw_contact = json.loads((bench_dir / "contact.json").read_text(encoding="utf-8"))
    contact = {k: v for k, v in raw_contact.items() if k not in MESSAGE_KEYS}
    message = {k: raw_contact[k] for k in MESSAGE_KEYS}
    keys = set(contact)
    template = Template(
        name="Canonical",
        slug="canonical",
        subject="{{ rules.greeting }} {{ contact.first_name }}, your monthly update",
        preheader="",
        body=_namespaced((bench_dir / "message.html.liquid").read_text(encoding="utf-8"), keys),
        text=_namespaced((bench_dir / "message.txt.liquid").read_text(encoding="utf-8"), keys),
    )
    rules = [Rule(name=name, kind=kind, expression=expression) for name, (kind, expression) in RULES.items()]
    return Canonical(template=template, rules=rules, contact=contact, message=message)


def _recipient(base: dict[str, Any], i: int) -> dict[str, Any]:
    contact = dict(base)
    contact["email"] = f"juergen.mueller+{i}@example.com"
    contact["tracking_token"] = f"tok_{i:08x}"
    return contact


def _ours(data: Canonical, n: int) -> tuple[float, int]:
    prepared = prepare(data.template, data.rules)
    headers = {
        "List-Unsubscribe": "<https://t.example.com/u/tok>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    size = 0
    start = time.process_time()
    for i in range(n):
        contact = _recipient(data.contact, i)
        message = {"unsubscribe_url": f"https://t.example.com/u/tok_{i:08x}"}
        rendered = prepared.render(contact, {}, message)
        raw = prepared.build_mime(
            rendered,
            from_header=("XES Demo", "news@example.com"),
            to=contact["email"],
            message_id_domain="example.com",
            headers=headers,
        )
        size += len(raw)
    return time.process_time() - start, size // max(n, 1)


def _django(data: Canonical, n: int) -> float:
    """Django's path with the same content; rendering is excluded (done before the clock starts),
    so the comparison flatters Django."""
    from django.core.mail import EmailMultiAlternatives

    prepared = prepare(data.template, data.rules)
    rendered = []
    for i in range(n):
        contact = _recipient(data.contact, i)
        rendered.append(
            (contact["email"], prepared.render(contact, {}, {"unsubscribe_url": f"https://t.example.com/u/{i}"}))
        )
    start = time.process_time()
    for to, item in rendered:
        message = EmailMultiAlternatives(
            subject=item.subject,
            body=item.text,
            from_email="XES Demo <news@example.com>",
            to=[to],
            headers={
                "List-Unsubscribe": "<https://t.example.com/u/tok>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        )
        message.attach_alternative(item.html, "text/html")
        message.message().as_bytes()
    return time.process_time() - start


def run(n: int = 20000) -> list[dict[str, Any]]:
    """Measure both paths in this run; rows for :func:`format_table`."""
    data = canonical()
    ours_seconds, size = _ours(data, n)
    django_n = max(200, n // 10)  # Django is slow; a tenth of the messages gives a stable rate
    django_seconds = _django(data, django_n)
    ours_rate = n / ours_seconds
    django_rate = django_n / django_seconds
    return [
        {
            "path": "XES prepare once + render + build_mime",
            "messages": n,
            "cpu_seconds": round(ours_seconds, 3),
            "per_core": round(ours_rate),
            "ms_per_message": round(1000 / ours_rate, 3),
            "bytes": size,
            "ratio": round(ours_rate / django_rate, 1),
            "goal": f">= {GOAL_PER_CORE}/s and >= {GOAL_RATIO}x",
            "ok": ours_rate >= GOAL_PER_CORE and ours_rate / django_rate >= GOAL_RATIO,
        },
        {
            "path": "Django EmailMultiAlternatives.message().as_bytes() (MIME only)",
            "messages": django_n,
            "cpu_seconds": round(django_seconds, 3),
            "per_core": round(django_rate),
            "ms_per_message": round(1000 / django_rate, 3),
            "bytes": None,
            "ratio": 1.0,
            "goal": "baseline",
            "ok": None,
        },
    ]


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``run()`` rows."""
    columns = ["path", "messages", "cpu_seconds", "per_core", "ms_per_message", "ratio", "goal", "ok"]
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
