"""``manage.py bench_pipeline``: the sending pipeline end to end against django-post-office, and
queueing a million recipients, measured in one run and printed as one table (``make bench``).

Runs on the configured PostgreSQL and Redis, with its own organisations (``bench-pipeline-*``),
removed afterwards. It empties the outbox and contact tables when only its own rows are there, so
point it at a benchmark database (``xes_bench``): it refuses a database whose name does not contain
"bench" unless ``--any-database`` is given.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from campaigns.benchmarks.pipeline import format_table, run


class Command(BaseCommand):
    help = "Measure the sending pipeline end to end (against django-post-office) and queueing 1,000,000 recipients."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--recipients", type=int, default=100_000, help="end to end: campaign recipients")
        parser.add_argument(
            "--post-office", type=int, default=20_000, help="end to end: messages for django-post-office"
        )
        parser.add_argument("--queue", type=int, default=1_000_000, help="queueing: campaign recipients (0: skip)")
        parser.add_argument("--workers", type=int, default=2, help="worker processes on each side")
        parser.add_argument("--any-database", action="store_true", help="run on a database not named *bench*")

    def handle(self, *args: Any, **options: Any) -> None:
        name = str(connection.settings_dict["NAME"])
        if connection.vendor != "postgresql":
            raise CommandError("bench_pipeline needs PostgreSQL (DATABASE_URL).")
        if "bench" not in name and not options["any_database"]:
            raise CommandError(f"Refusing to run on {name!r}: use a benchmark database, or --any-database.")
        rows = run(
            recipients=options["recipients"],
            post_office_messages=options["post_office"],
            queue_recipients=options["queue"],
            workers=options["workers"],
        )
        self.stdout.write(
            f"sending pipeline on PostgreSQL ({name}), canonical message of campaigns/benchmarks/canonical/"
        )
        self.stdout.write(format_table(rows))
