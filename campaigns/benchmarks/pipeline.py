"""End-to-end sending throughput against django-post-office, and queueing a million recipients.

``run()`` measures, in one run on the configured PostgreSQL and Redis:

1. **XES end to end**: a promotional campaign of the canonical message (``../shared/bench/``) to N
   contacts that each differ, from the "Send" path (:func:`campaigns.sending.start_campaign_async`)
   until the last message is recorded as sent, with W real ``manage.py rqworker sending``
   processes (started and idle before "send", as in production), the send-rate limit off
   (:mod:`campaigns.benchmarks.bench_settings`) and a provider that only counts the bytes
   (:class:`campaigns.benchmarks.counting.CountingProvider`). The queueing job, the batch jobs,
   claiming, rendering, MIME, recording and credit consumption are the pipeline's own code;
2. **django-post-office** (3.12, its fastest settings, see
   :mod:`campaigns.benchmarks.postoffice_settings`) on the same message, same database, same
   number of processes, from ``send_many`` until ``send_queued`` has sent everything
   (:mod:`campaigns.benchmarks.postoffice_run`, in a subprocess because post_office is not one of
   our apps). It is measured on fewer messages (it is slow); rates are per message;
3. **queueing** a campaign of a million recipients (:mod:`campaigns.benchmarks.queueing`).

The benchmark's organisations and rows are removed afterwards (:func:`campaigns.benchmarks.world.cleanup`).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import django_rq
from django.conf import settings
from django.db import connection
from django.db.models import Max
from rq import Worker

from campaigns.benchmarks import queueing
from campaigns.benchmarks.counting import read_counters, reset_counters
from campaigns.benchmarks.world import cleanup, make_world
from campaigns.models import Campaign, Message
from campaigns.sending import start_campaign_async
from campaigns.sending.jobs import QUEUE
from campaigns.sending.providers import ENV_VARIABLE

__all__ = ["end_to_end", "format_table", "post_office", "run"]

ROOT = Path(settings.BASE_DIR)
GOAL_RATIO = 10
TIMEOUT = 900.0  # seconds: a run that takes longer has failed


def database_url() -> str:
    """The URL of the database this process uses (for the subprocesses)."""
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _env(settings_module: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE=settings_module,
        DATABASE_URL=database_url(),
        REDIS_URL=str(settings.REDIS_URL or "redis://127.0.0.1:6379/0"),
        LOG_LEVEL="WARNING",
    )
    env[ENV_VARIABLE] = "counting"
    return env


def start_workers(n: int, log: Path) -> list[subprocess.Popen[bytes]]:
    """``n`` real RQ workers on the ``sending`` queue (``manage.py rqworker``), each in its own
    process group so that stopping it also stops the work-horse it forked."""
    out = log.open("ab")
    return [
        subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "rqworker",
                QUEUE,
                "--worker-class",
                "campaigns.benchmarks.counting.BenchWorker",
            ],
            cwd=ROOT,
            env=_env("campaigns.benchmarks.bench_settings"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for _ in range(n)
    ]


def wait_ready(processes: list[subprocess.Popen[bytes]], timeout: float = 60.0) -> None:
    """Until every worker has registered with Redis (it is then waiting for jobs)."""
    queue = django_rq.get_queue(QUEUE)
    pids = {p.pid for p in processes}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            raise RuntimeError("a benchmark worker exited before it was ready")
        if pids <= {w.pid for w in Worker.all(queue=queue)}:
            return
        time.sleep(0.1)
    raise RuntimeError("the benchmark workers did not start")


def stop_workers(processes: list[subprocess.Popen[bytes]]) -> None:
    """Warm shutdown (SIGTERM: finish the current job), then SIGKILL whatever is left."""
    for p in processes:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in processes:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def end_to_end(recipients: int = 100_000, workers: int = 2) -> dict[str, Any]:
    """Our pipeline, "Send" to the last message sent; one row for :func:`format_table`."""
    world = make_world(recipients)
    campaign = world.campaign("End-to-end bench")
    reset_counters("xes")
    log = Path(tempfile.gettempdir()) / "xes-bench-pipeline-workers.log"
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    processes = start_workers(workers, log)
    try:
        wait_ready(processes)
        started_at = time.time()
        started = time.perf_counter()
        if not start_campaign_async(campaign.pk):
            raise RuntimeError("the campaign did not start")
        while True:
            status = Campaign.objects.values_list("status", flat=True).get(pk=campaign.pk)
            if status == Campaign.Status.DONE:
                break
            if status not in (Campaign.Status.QUEUEING, Campaign.Status.SENDING):
                raise RuntimeError(f"the campaign ended {status}")
            if any(p.poll() is not None for p in processes):
                raise RuntimeError(f"a benchmark worker died; see {log}")
            if time.perf_counter() - started > TIMEOUT:
                raise RuntimeError(f"not done after {TIMEOUT:.0f} s; see {log}")
            time.sleep(0.05)
    finally:
        stop_workers(processes)
    # CPU of the worker processes and their work-horses (waited for, so counted here), start-up included.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = (children.ru_utime + children.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    last = Message.objects.filter(campaign=campaign).aggregate(last=Max("sent_at"))["last"]
    # The last outcome's recording time, not the moment this loop noticed "done".
    elapsed = last.timestamp() - started_at
    sent = Message.objects.filter(campaign=campaign, status=Message.Status.SENT).count()
    counted, size = read_counters("xes")
    campaign.refresh_from_db()
    consumed = campaign.reservation.consumed if campaign.reservation is not None else 0
    return {
        "sent": sent,
        "counted": counted,
        "bytes": size,
        "seconds": elapsed,
        "consumed": consumed,
        "worker_cpu": worker_cpu,
        "ok": sent == counted == consumed == recipients,
    }


def post_office(messages: int = 20_000, processes: int = 2) -> dict[str, Any]:
    """django-post-office in a subprocess (see :mod:`campaigns.benchmarks.postoffice_run`)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "campaigns.benchmarks.postoffice_run",
            "--messages",
            str(messages),
            "--processes",
            str(processes),
        ],
        cwd=ROOT,
        env=_env("campaigns.benchmarks.postoffice_settings"),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the post_office run failed:\n{result.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    data["ok"] = data["sent"] == data["counted"] == messages
    return data


def run(
    recipients: int = 100_000,
    post_office_messages: int = 20_000,
    queue_recipients: int = 1_000_000,
    workers: int = 2,
) -> list[dict[str, Any]]:
    """All measurements of this module in one run; rows for :func:`format_table`."""
    cleanup()
    rows: list[dict[str, Any]] = []
    try:
        if queue_recipients:
            # First, so that the peak RSS it reports is that of queueing, not of anything before.
            rows.append(queueing.measure(queue_recipients))
            cleanup()
        if recipients:
            ours = end_to_end(recipients, workers)
            cleanup()
            theirs = post_office(post_office_messages, workers)
            our_rate = ours["sent"] / ours["seconds"]
            their_rate = theirs["sent"] / theirs["seconds"]
            ratio = our_rate / their_rate
            rows.append(
                {
                    "measurement": (
                        f"XES end to end: Send -> all sent, {workers} rqworkers, provider counts bytes, no rate limit"
                    ),
                    "messages": ours["sent"],
                    "seconds": round(ours["seconds"], 2),
                    "rate": round(our_rate),
                    "detail": (
                        f"{ratio:.1f}x post_office; {ours['bytes'] // max(1, ours['counted']):,} bytes/msg, "
                        f"{ours['consumed']:,} credits consumed, worker CPU "
                        f"{1000 * ours['worker_cpu'] / max(1, ours['sent']):.2f} ms/msg"
                    ),
                    "goal": f">= {GOAL_RATIO}x post_office",
                    "ok": ours["ok"] and ratio >= GOAL_RATIO,
                }
            )
            rows.append(
                {
                    "measurement": (
                        f"django-post-office 3.12: send_many -> send_queued({workers} processes), pre-rendered content"
                    ),
                    "messages": theirs["sent"],
                    "seconds": round(theirs["seconds"], 2),
                    "rate": round(their_rate),
                    "detail": (
                        f"{theirs['bytes'] // max(1, theirs['counted']):,} bytes/msg; send_many "
                        f"{theirs['queue_seconds']:.1f} s; fewer messages, rate per message"
                    ),
                    "goal": "baseline",
                    "ok": None if theirs["ok"] else False,
                }
            )
    finally:
        cleanup()
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``run()`` rows."""
    columns = ["measurement", "messages", "seconds", "rate", "goal", "ok", "detail"]
    headers = {"rate": "msg/s"}
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    titles = [headers.get(c, c) for c in columns]
    widths = [max(len(t), *(len(r[i]) for r in cells)) for i, t in enumerate(titles)]
    lines = ["  ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)
