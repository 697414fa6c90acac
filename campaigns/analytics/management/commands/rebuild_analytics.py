"""``manage.py rebuild_analytics``: count every message event again, from scratch, in one transaction
(reports keep showing the old numbers until it commits)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from campaigns.analytics import aggregation


class Command(BaseCommand):
    help = "Rebuild the analytics counters from the raw message events."

    def handle(self, *args: Any, **options: Any) -> None:
        result = aggregation.rebuild()
        if result.busy:
            raise CommandError("Another aggregation is still running; try again in a minute.")
        if result.waiting:
            raise CommandError("Writers of events did not finish within a minute; try again.")
        self.stdout.write(f"Counted events up to id {result.counted_upto} in {result.seconds:.1f} s.")
