"""Tracking endpoints under load, and how fast buffered events reach PostgreSQL.

``run()`` measures, in one run on the configured PostgreSQL and Redis:

1. **HTTP**: gunicorn (``--workers 2``) serving ``/t/o/<token>`` and ``/t/c/<token>`` on 127.0.0.1
   through :mod:`campaigns.tracking.wsgi` (the tracking middleware first behind it, see
   :mod:`campaigns.benchmarks.tracking_settings`), driven by
   :mod:`campaigns.benchmarks.loadgen` in its own process (three opens to one click, every token a
   different message) for S seconds: requests per second and p99 latency. The flusher
   (:func:`campaigns.tracking.buffer.flush`) runs every two seconds meanwhile, as the cron job
   would; after the run it drains the buffer and the stored events are counted against the
   answered requests (every answered open and click must be stored, once);
2. the same across worker restarts: a ``HUP`` to the gunicorn master (all workers replaced) at a
   third of the run and a ``TERM`` to one worker at two thirds;
3. **COPY**: N prepared events written with ``COPY`` (the flusher's write), and the flusher's whole
   store step (decode, validate against the messages, flags, COPY), against one ``INSERT`` per
   event in its own transaction (what an endpoint writing per request would do);
4. **link rewriting**: render + MIME of the canonical message with its 20 links tracked and the
   open pixel, per core, against the same without tracking.

Everything it creates belongs to organisations named ``bench-tracking-...`` and is removed after.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Organisation, SenderAddress, SendingAccount
from campaigns.benchmarks.render import canonical
from campaigns.models import Message, MessageEvent, Template, TrackedLink, url_hash
from campaigns.tracking import buffer, tokens
from campaigns.tracking.links import Tracking

__all__ = ["format_table", "run"]

ROOT = Path(settings.BASE_DIR)
PREFIX = "bench-tracking-"
GOAL_RPS = 2500
GOAL_P99_MS = 50.0
GOAL_COPY = 100_000
LINKS = 20


@dataclass
class World:
    organisation: Organisation
    account: SendingAccount
    message_ids: list[int]
    link_ids: list[int]


def make_world(messages: int) -> World:
    """An organisation with ``messages`` delivered messages (sent an hour ago) and 20 tracked links."""
    stamp = time.monotonic_ns()
    organisation = Organisation.objects.create(name=f"{PREFIX}{stamp}")
    account = SendingAccount.objects.create(organisation=organisation, name="Bench")
    sender = SenderAddress.objects.create(
        sending_account=account, email="news@bench.example", display_name="Bench", verified_at=timezone.now()
    )
    template = Template.objects.create(
        organisation=organisation, name="Bench", slug="bench", subject="Hi", body="<p>Hi</p>"
    )
    sent = timezone.now() - timedelta(hours=1)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Message._meta.db_table}
                (organisation_id, sending_account_id, template_id, sender_id, to_email, data, promotional, status,
                 token, attempts, claimed_by, provider_message_id, error, created_at, sent_at, updated_at)
            SELECT %s, %s, %s, %s, 'reader' || g || '@example.net', '{{}}', true, 'delivered',
                   %s || g, 1, '', 'bench-' || g, '', %s, %s, %s
            FROM generate_series(1, %s) AS g
            RETURNING id
            """,
            [organisation.pk, account.pk, template.pk, sender.pk, f"bt{stamp}-", sent, sent, sent, messages],
        )
        message_ids = [pk for (pk,) in cursor.fetchall()]
    links = TrackedLink.objects.bulk_create(
        TrackedLink(organisation=organisation, url=url, url_hash=url_hash(url))
        for url in (f"https://shop.example/product/{n}?utm_source=xes" for n in range(LINKS))
    )
    return World(organisation, account, message_ids, [link.pk for link in links])


def cleanup() -> None:
    """Remove every ``bench-tracking-`` organisation and what it owns."""
    ids = list(Organisation.objects.filter(name__startswith=PREFIX).values_list("pk", flat=True))
    if not ids:
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {MessageEvent._meta.db_table} WHERE message_id IN "
            f"(SELECT id FROM {Message._meta.db_table} WHERE organisation_id = ANY(%s))",
            [ids],
        )
        cursor.execute(f"DELETE FROM {Message._meta.db_table} WHERE organisation_id = ANY(%s)", [ids])
        TrackedLink.objects.filter(organisation_id__in=ids).delete()
        Template.objects.filter(organisation_id__in=ids).delete()
        SenderAddress.objects.filter(sending_account__organisation_id__in=ids).delete()
        Organisation.objects.filter(pk__in=ids).delete()


# --- HTTP -----------------------------------------------------------------------------------------


def _paths(world: World) -> list[bytes]:
    """Three opens to one click, each token a different message."""
    org = world.organisation.pk
    paths = []
    for index, message_id in enumerate(world.message_ids):
        if index % 4 == 3:
            link_id = world.link_ids[index % len(world.link_ids)]
            paths.append(f"/t/c/{tokens.click_token(message_id, link_id, org)}".encode())
        else:
            paths.append(f"/t/o/{tokens.open_token(message_id)}".encode())
    return paths


def _env() -> dict[str, str]:
    from campaigns.benchmarks.pipeline import database_url

    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="campaigns.benchmarks.tracking_settings",
        DATABASE_URL=database_url(),
        REDIS_URL=str(settings.REDIS_URL or "redis://127.0.0.1:6379/0"),
        LOG_LEVEL="WARNING",
        DJANGO_ENV="development",
    )
    return env


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)  # noqa: S607
    return [int(p) for p in out.stdout.split()]


def _wait_ready(port: int, timeout: float = 60.0) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/t/o/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not start")


class Flusher(threading.Thread):
    """The cron job's work, every ``interval`` seconds, in this process."""

    def __init__(self, interval: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.stopping = threading.Event()
        self.stored = 0

    def run(self) -> None:
        try:
            while not self.stopping.wait(self.interval):
                self.stored += buffer.flush().stored
        finally:
            connection.close()


def http_run(
    world: World, seconds: float, concurrency: int, workers: int, restarts: bool, worker_class: str
) -> dict[str, Any]:
    """One load run against a fresh gunicorn; answered requests against stored events."""
    paths_file = Path(tempfile.mkstemp(prefix="xes-track-", suffix=".txt")[1])
    paths_file.write_bytes(b"\n".join(_paths(world)) + b"\n")
    port = _free_port()
    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "campaigns.tracking.wsgi:application",
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        worker_class,
        "--backlog",
        "2048",
        "--log-level",
        "warning",
        "--keep-alive",
        "5",
        "--preload",  # workers fork from a master that has loaded Django: a restart takes milliseconds
    ]
    if worker_class == "gthread":
        args += ["--threads", str(int(os.environ.get("XES_BENCH_THREADS", "4")))]
    server = subprocess.Popen(args, cwd=ROOT, env=_env(), start_new_session=True)  # noqa: S603
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COALESCE(max(id), 0) FROM {MessageEvent._meta.db_table}")
        (start_id,) = cursor.fetchone()
    flusher = Flusher()
    try:
        _wait_ready(port)
        flusher.start()
        load = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                "-m",
                "campaigns.benchmarks.loadgen",
                "127.0.0.1",
                str(port),
                str(seconds),
                str(concurrency),
                str(paths_file),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        if restarts:
            time.sleep(seconds / 3)
            os.kill(server.pid, signal.SIGHUP)  # graceful reload: every worker replaced
            time.sleep(seconds / 3)
            victims = _children(server.pid)
            if victims:
                os.kill(victims[0], signal.SIGTERM)  # one worker stops; the master starts another
        out, _err = load.communicate(timeout=seconds + 120)
        result: dict[str, Any] = json.loads(out)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        flusher.stopping.set()
        if flusher.is_alive():
            flusher.join(60)
        paths_file.unlink(missing_ok=True)
    drain = time.perf_counter()
    while buffer.pending():
        buffer.flush()
    result["drain_seconds"] = round(time.perf_counter() - drain, 2)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT type, count(*) FROM {MessageEvent._meta.db_table} WHERE id > %s AND organisation_id = %s "
            "GROUP BY type",
            [start_id, world.organisation.pk],
        )
        stored = dict(cursor.fetchall())
    by_kind = result["by_kind"]
    result["sent"] = by_kind.get("/t/o/ 200", 0) + by_kind.get("/t/c/ 302", 0)
    result["stored"] = stored.get("open", 0) + stored.get("click", 0)
    result["stored_by_type"] = stored
    return result


# --- COPY -----------------------------------------------------------------------------------------


def _rows(world: World, n: int) -> list[Any]:
    from datetime import UTC, datetime

    base = time.time()
    rows = []
    for i in range(n):
        message_id = world.message_ids[i % len(world.message_ids)]
        click = i % 4 == 3
        rows.append(
            buffer._Row(  # noqa: SLF001 - the flusher's own row type
                message_id=message_id,
                organisation_id=world.organisation.pk,
                sending_account_id=world.account.pk,
                campaign_id=None,
                contact_id=None,
                type="click" if click else "open",
                at=datetime.fromtimestamp(base + i / 1000, tz=UTC),
                machine=False,
                link_id=world.link_ids[i % LINKS] if click else None,
                recipient_domain="example.net",
                data={"ua": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Thunderbird/115"},
            )
        )
    return rows


def copy_rates(world: World, n: int, single: int) -> dict[str, float]:
    """events/s of COPY alone, of the flusher's whole store step, and of one INSERT per event."""
    rows = _rows(world, n)
    start = time.perf_counter()
    with transaction.atomic():
        buffer._write(rows)  # noqa: SLF001
    copy_seconds = time.perf_counter() - start

    records = [
        buffer.encode(
            buffer.CLICK if r.type == "click" else buffer.OPEN,
            r.message_id,
            r.link_id,
            r.organisation_id,
            r.at.timestamp(),
            r.data["ua"],
            "",
        )
        for r in rows
    ]
    start = time.perf_counter()
    for offset in range(0, n, buffer.BATCH_SIZE):
        buffer.store(records[offset : offset + buffer.BATCH_SIZE], uuid.uuid4())
    store_seconds = time.perf_counter() - start

    sample = rows[:single]
    start = time.perf_counter()
    with connection.cursor() as cursor:
        for r in sample:  # autocommit: one transaction per event, as a per-request INSERT would be
            cursor.execute(
                f"INSERT INTO {MessageEvent._meta.db_table} (message_id, organisation_id, sending_account_id, "
                "campaign_id, type, subtype, at, machine, link_id, recipient_domain, data) "
                "VALUES (%s, %s, %s, %s, %s, '', %s, %s, %s, %s, %s)",
                [
                    r.message_id,
                    r.organisation_id,
                    r.sending_account_id,
                    r.campaign_id,
                    r.type,
                    r.at,
                    r.machine,
                    r.link_id,
                    r.recipient_domain,
                    json.dumps(r.data),
                ],
            )
    insert_seconds = time.perf_counter() - start
    return {
        "copy": n / copy_seconds,
        "copy_seconds": copy_seconds,
        "store": n / store_seconds,
        "store_seconds": store_seconds,
        "insert": single / insert_seconds,
        "insert_seconds": insert_seconds,
    }


# --- link rewriting ---------------------------------------------------------------------------------


def rewrite_rates(n: int) -> dict[str, float]:
    """Messages per CPU second: render + MIME of the canonical message with and without tracking
    (its 20 links made static, as a campaign's links are; a dict stands in for the per-process
    :class:`~campaigns.tracking.links.LinkIds` cache, which answers repeated URLs the same way)."""
    from campaigns.rendering import prepare

    data = canonical()
    data.template.body = re.sub(r"\{\{\s*contact\.tracking_token\s*\}\}", "spring", data.template.body)
    prepared = prepare(data.template, data.rules)
    ids: dict[str, int] = {}

    def link_ids(organisation_id: int, urls: list[str]) -> dict[str, int]:
        for url in urls:
            ids.setdefault(url, len(ids) + 1)
        return {url: ids[url] for url in urls}

    def measure(tracked: bool) -> float:
        start = time.process_time()
        for i in range(n):
            contact = dict(data.contact, email=f"reader+{i}@example.com")
            rendered = prepared.render(
                contact, {}, {"unsubscribe_url": f"https://t.example.com/u/tok{i}"}, tracked=tracked
            )
            prepared.build_mime(
                rendered,
                from_header=("XES Bench", "news@example.com"),
                to=contact["email"],
                message_id_domain="example.com",
                tracking=Tracking("https://t.example.com", 10_000_000 + i, 42, link_ids, ("https://t.example.com/u/",))
                if tracked
                else None,
            )
        return n / (time.process_time() - start)

    return {"plain": measure(False), "tracked": measure(True)}


# --- the run ------------------------------------------------------------------------------------------


def run(
    seconds: float = 20.0,
    concurrency: int = 16,
    workers: int = 2,
    copy_events: int = 200_000,
    single_inserts: int = 5_000,
    render_messages: int = 3_000,
    worker_class: str = "gthread",
) -> list[dict[str, Any]]:
    cleanup()
    rows: list[dict[str, Any]] = []
    world = make_world(20_000)
    try:
        for restarts in (False, True):
            result = http_run(world, seconds, concurrency, workers, restarts, worker_class)
            ok_rate = result["rps"] >= GOAL_RPS and result["p99_ms"] < GOAL_P99_MS
            rows.append(
                {
                    "measurement": "HTTP /t/o + /t/c, gunicorn "
                    + f"{workers} {worker_class} workers"
                    + (", HUP + TERM a worker mid-run" if restarts else ""),
                    "count": result["answered"],
                    "seconds": result["seconds"],
                    "rate": result["rps"],
                    "p99_ms": result["p99_ms"],
                    "goal": f">= {GOAL_RPS}/s, p99 < {GOAL_P99_MS:g} ms, sent = stored",
                    "ok": ok_rate and result["sent"] == result["stored"] and not result["errors"],
                    "detail": f"sent {result['sent']} stored {result['stored']} errors {result['errors']} "
                    f"p50 {result['p50_ms']} ms statuses {result['statuses']} drain {result['drain_seconds']} s",
                }
            )
        rates = copy_rates(world, copy_events, single_inserts)
        rows.append(
            {
                "measurement": "COPY of prepared events (flusher write)",
                "count": copy_events,
                "seconds": round(rates["copy_seconds"], 2),
                "rate": round(rates["copy"]),
                "goal": f">= {GOAL_COPY}/s",
                "ok": rates["copy"] >= GOAL_COPY,
                "detail": f"{rates['copy'] / rates['insert']:.0f}x one INSERT per event",
            }
        )
        rows.append(
            {
                "measurement": "flusher store step (decode, validate, flag, COPY)",
                "count": copy_events,
                "seconds": round(rates["store_seconds"], 2),
                "rate": round(rates["store"]),
                "goal": "",
                "ok": None,
                "detail": f"batches of {buffer.BATCH_SIZE}",
            }
        )
        rows.append(
            {
                "measurement": "one INSERT per event (autocommit)",
                "count": single_inserts,
                "seconds": round(rates["insert_seconds"], 2),
                "rate": round(rates["insert"]),
                "goal": "baseline",
                "ok": None,
                "detail": "",
            }
        )
        render = rewrite_rates(render_messages)
        rows.append(
            {
                "measurement": "render + MIME with 20 tracked links + pixel (per core)",
                "count": render_messages,
                "seconds": None,
                "rate": round(render["tracked"]),
                # The cost of tracking, for comparison: the render goal (>= 4,000/s per core,
                # bench_render) is for the canonical message as it is, untracked.
                "goal": "(cost of tracking)",
                "ok": None,
                "detail": f"the same message untracked: {round(render['plain'])}/s",
            }
        )
    finally:
        cleanup()
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``run()`` rows."""
    columns = ["measurement", "count", "seconds", "rate", "p99_ms", "goal", "ok", "detail"]
    headers = {"rate": "per s", "p99_ms": "p99 ms"}
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    titles = [headers.get(c, c) for c in columns]
    widths = [max(len(t), *(len(r[i]) for r in cells)) for i, t in enumerate(titles)]
    lines = ["  ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)
