"""``manage.py bench_ses``: the ``ses`` provider against a local SES v2 stand-in: messages per second
per core of the send path (against boto3's ``send_email``) and rate adherence of 4 workers at
50/s then 500/s with 100 ms latency (``make bench``). ``--worker`` is the benchmark's own worker
process (internal)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from campaigns.benchmarks.ses_rate import format_table, run, work


class Command(BaseCommand):
    help = "Measure the SES send path per core and the rate limiter's adherence against a local SES stand-in."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seconds", type=float, default=60.0, help="length of each rate phase")
        parser.add_argument("-n", type=int, default=5000, help="messages for the send-path measurement")
        parser.add_argument("--worker", type=int, default=None, help="internal: run as a worker for this account")
        parser.add_argument("--until", type=float, default=0.0, help="internal: worker stops at this Unix time")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["worker"] is not None:
            work(options["worker"], options["until"])
            return
        self.stdout.write(format_table(run(options["seconds"], options["n"])))
