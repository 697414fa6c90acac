"""The django-post-office side of the end-to-end benchmark, run as its own process:

    DJANGO_SETTINGS_MODULE=campaigns.benchmarks.postoffice_settings \
        python -m campaigns.benchmarks.postoffice_run --messages 20000 --processes 2

It migrates post_office's tables (same PostgreSQL database), empties them, renders the canonical
message for every recipient with our renderer *before* the clock starts (post_office then gets
the same subject, text, HTML and List-Unsubscribe headers, pre-rendered, which flatters it), then
times ``send_many`` (its bulk queueing, in chunks of 1,000) + ``send_queued_mail_until_done`` (what
``manage.py send_queued_mail --processes N`` runs) until every e-mail is sent through the counting
backend. Prints one JSON object; empties the tables again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

CHUNK = 1000


def _recipients(n: int) -> list[dict[str, Any]]:
    """The same canonical message, varied per recipient as the XES side's contacts are, rendered."""
    from campaigns.benchmarks.render import canonical
    from campaigns.rendering import prepare

    data = canonical()
    prepared = prepare(data.template, data.rules)
    local, _at, domain = str(data.contact["email"]).partition("@")
    result = []
    for g in range(1, n + 1):
        contact = dict(data.contact)
        contact.update(
            email=f"{local}+{g}@{domain}",
            tracking_token=f"tok_{g:08x}",
            points=(g * 37) % 300,
            country="AT" if g % 3 == 0 else "DE",
        )
        url = f"https://t.example.com/u/tok_{g:08x}"
        rendered = prepared.render(contact, {}, {"unsubscribe_url": url})
        result.append(
            {
                "sender": "XES Bench <news@bench.example>",
                "recipients": [contact["email"]],
                "subject": rendered.subject,
                "message": rendered.text,
                "html_message": rendered.html,
                "headers": {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
            }
        )
    return result


def _empty_tables() -> None:
    from django.db import connection
    from post_office.models import Email, Log

    tables = [Email._meta.db_table, Log._meta.db_table, Email.attachments.through._meta.db_table]  # type: ignore[attr-defined]
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE " + ", ".join(tables))


def measure(messages: int, processes: int) -> dict[str, Any]:
    """Queue and send ``messages`` e-mails with post_office; seconds and counts as a dict."""
    from django.core.management import call_command
    from post_office import mail
    from post_office.lockfile import default_lockfile
    from post_office.models import STATUS, Email

    from campaigns.benchmarks.counting import read_counters, reset_counters

    call_command("migrate", "post_office", verbosity=0)
    _empty_tables()
    batch = _recipients(messages)
    reset_counters("post_office")
    try:
        started = time.perf_counter()
        for i in range(0, len(batch), CHUNK):
            mail.send_many(batch[i : i + CHUNK])
        queued = time.perf_counter() - started
        mail.send_queued_mail_until_done(default_lockfile, processes=processes, log_level=0)
        elapsed = time.perf_counter() - started
        sent = Email.objects.filter(status=STATUS.sent).count()
        counted, size = read_counters("post_office")
    finally:
        _empty_tables()
    return {
        "messages": messages,
        "processes": processes,
        "seconds": elapsed,
        "queue_seconds": queued,
        "sent": sent,
        "counted": counted,
        "bytes": size,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "campaigns.benchmarks.postoffice_settings")
    import django

    django.setup()
    result = measure(args.messages, args.processes)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
