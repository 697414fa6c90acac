"""``manage.py bench_tracking``: the open/click endpoints under gunicorn with a local load generator
(requests/s, p99, events sent = stored, also across worker restarts), COPY against one INSERT per
event, and link rewriting per core; one table.

Runs on the configured PostgreSQL and Redis with its own organisations (``bench-tracking-*``),
removed afterwards; refuses a database whose name does not contain "bench" unless
``--any-database`` is given.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from campaigns.benchmarks.tracking import format_table, run


class Command(BaseCommand):
    help = "Measure the tracking endpoints under gunicorn, COPY against INSERT, and link rewriting."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seconds", type=float, default=20.0, help="length of each HTTP run")
        parser.add_argument("--concurrency", type=int, default=16, help="connections of the load generator")
        parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
        parser.add_argument("--worker-class", default="gthread", choices=["sync", "gthread"])
        parser.add_argument("--copy-events", type=int, default=200_000, help="events written with COPY")
        parser.add_argument("--single-inserts", type=int, default=5_000, help="events written one INSERT each")
        parser.add_argument("--render-messages", type=int, default=3_000, help="messages rendered per variant")
        parser.add_argument("--any-database", action="store_true", help="run on a database not named *bench*")

    def handle(self, *args: Any, **options: Any) -> None:
        name = str(connection.settings_dict["NAME"])
        if connection.vendor != "postgresql":
            raise CommandError("bench_tracking needs PostgreSQL (DATABASE_URL).")
        if "bench" not in name and not options["any_database"]:
            raise CommandError(f"Refusing to run on {name!r}: use a benchmark database, or --any-database.")
        rows = run(
            seconds=options["seconds"],
            concurrency=options["concurrency"],
            workers=options["workers"],
            copy_events=options["copy_events"],
            single_inserts=options["single_inserts"],
            render_messages=options["render_messages"],
            worker_class=options["worker_class"],
        )
        self.stdout.write(f"tracking on PostgreSQL ({name}); loopback HTTP, load generator in its own process")
        self.stdout.write(format_table(rows))
