"""``manage.py bench_render``: render + MIME per core for the canonical message, against Django's
``EmailMultiAlternatives`` path on the same content, measured in the same run (``make bench``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from campaigns.benchmarks.render import format_table, run


class Command(BaseCommand):
    help = "Measure rendering + MIME building per core for the canonical benchmark message."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-n", type=int, default=20_000, help="messages per measurement")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(format_table(run(options["n"])))
