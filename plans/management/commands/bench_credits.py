"""Measure the credit API (reserve + consume) on the configured database and print a table.

`make bench` runs it against PostgreSQL. It creates its own organisations (names start with
"bench-credits-") and removes them afterwards; nothing else is touched.
"""

from __future__ import annotations

import statistics
import threading
import time
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Organisation
from plans import services
from plans.models import CreditAccount, CreditEntry, Plan, Reservation, ReservationPart, Subscription


class Command(BaseCommand):
    help = "Benchmark reserve + consume of credits (single thread, contended, independent organisations)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--operations", type=int, default=400, help="reserve+consume pairs per thread")
        parser.add_argument("--threads", type=int, default=4)

    def handle(self, *args: Any, **options: Any) -> None:
        ops, threads = options["operations"], options["threads"]
        plan = Plan.objects.get(code="ENTERPRISE")
        rows = []
        try:
            rows.append(("1 thread, 1 organisation", *self._run(plan, ops, 1, shared=True)))
            rows.append((f"{threads} threads, 1 organisation (contended)", *self._run(plan, ops, threads, shared=True)))
            rows.append((f"{threads} threads, {threads} organisations", *self._run(plan, ops, threads, shared=False)))
        finally:
            self._cleanup()
        self.stdout.write(f"credit API on {connection.vendor}: reserve(1) + consume(1) per operation\n")
        header = f"{'scenario':<42} {'ops':>7} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for name, count, rate, p50, p99 in rows:
            self.stdout.write(f"{name:<42} {count:>7} {rate:>9.0f} {p50:>8.2f} {p99:>8.2f}")

    def _run(self, plan: Plan, ops: int, threads: int, *, shared: bool) -> tuple[int, float, float, float]:
        at = timezone.now() - timedelta(minutes=1)
        orgs = [
            Organisation.objects.create(name=f"bench-credits-{time.monotonic_ns()}-{i}")
            for i in range(1 if shared else threads)
        ]
        for org in orgs:
            services.grant_plan(org, plan, origin=Subscription.Origin.XES_TEAM, at=at)
        latencies: list[float] = []
        lock = threading.Lock()
        barrier = threading.Barrier(threads)

        def work(index: int) -> None:
            org = orgs[0 if shared else index]
            mine: list[float] = []
            barrier.wait()
            for _ in range(ops):
                started = time.perf_counter()
                reservation = services.reserve(org, 1, promotional=False)
                services.consume(reservation, 1)
                mine.append((time.perf_counter() - started) * 1000)
            with lock:
                latencies.extend(mine)
            connection.close()

        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
        for org in orgs:  # the balances must still agree with the ledger
            assert services.rebuild_balances(org) == [], org
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        return len(latencies), len(latencies) / elapsed, statistics.median(latencies), p99

    def _cleanup(self) -> None:
        """Remove the benchmark's organisations. The ledger protects its rows from the ORM (it is
        append-only, and an organisation with a ledger cannot be deleted), so this goes in SQL."""
        ids = list(Organisation.objects.filter(name__startswith="bench-credits-").values_list("pk", flat=True))
        if not ids:
            return
        tables = [
            (CreditEntry._meta.db_table, "organisation_id"),
            (
                ReservationPart._meta.db_table,
                f"reservation_id IN (SELECT id FROM {Reservation._meta.db_table} WHERE organisation_id = ANY(%s))",
            ),
            (Reservation._meta.db_table, "organisation_id"),
            (Subscription._meta.db_table, "organisation_id"),
            (CreditAccount._meta.db_table, "organisation_id"),
            (Organisation._meta.db_table, "id"),
        ]
        with transaction.atomic(), connection.cursor() as cursor:
            for table, condition in tables:
                if "%s" not in condition:
                    condition = f"{condition} = ANY(%s)"
                cursor.execute(f"DELETE FROM {table} WHERE {condition}", [ids])
