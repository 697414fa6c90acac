"""``manage.py bench_analytics``: the analytics counters over 10,000,000 message events (one campaign
of 1,000,000 messages): full rebuild, incremental runs and staleness, rebuild == incremental, and
the p95 of every dashboard query, printed as one table (``make bench``).

It writes and then removes its own organisation (``bench-analytics-*``) and events; it truncates
the events table when nothing else is in it, so point it at a benchmark database (``xes_bench``): it
refuses a database whose name does not contain "bench" unless ``--any-database`` is given.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from campaigns.benchmarks.analytics import BIG_CAMPAIGN_MESSAGES, format_table, run


class Command(BaseCommand):
    help = "Measure the analytics counters and dashboard queries over 10,000,000 message events."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--events", type=int, default=10_000_000, help="message events to generate")
        parser.add_argument(
            "--big-campaign", type=int, default=BIG_CAMPAIGN_MESSAGES, help="messages of the biggest campaign"
        )
        parser.add_argument("--repeat", type=int, default=50, help="runs of each dashboard query")
        parser.add_argument("--jobs", type=int, default=2, help="connections generating the events at once")
        parser.add_argument("--any-database", action="store_true", help="run on a database not named *bench*")

    def handle(self, *args: Any, **options: Any) -> None:
        name = str(connection.settings_dict["NAME"])
        if connection.vendor != "postgresql":
            raise CommandError("bench_analytics needs PostgreSQL (DATABASE_URL).")
        if "bench" not in name and not options["any_database"]:
            raise CommandError(f"Refusing to run on {name!r}: use a benchmark database, or --any-database.")
        big = min(options["big_campaign"], options["events"] // 6)
        rows = run(events=options["events"], big_messages=big, repeat=options["repeat"], jobs=options["jobs"])
        self.stdout.write(
            f"analytics on PostgreSQL ({name}): {options['events']:,} events, {options['repeat']} runs per query"
        )
        self.stdout.write(format_table(rows))
