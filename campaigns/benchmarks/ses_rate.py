"""The ``ses`` provider against the local SES v2 stand-in (:mod:`campaigns.benchmarks.ses_standin`).

``run()`` measures, in one run, with the stand-in in a process of its own:

(a) the send path, no latency, no rate limit: CPU time of this process per ``send_raw`` of a 20 KB
    message, for our path (:class:`deliverability.providers.ses.FastSender`: SigV4 signer + pooled
    connection) and for boto3's ``client.send_email`` (the same provider with a boto3 client);
(b) rate adherence: 4 worker processes run the real batch function
    (:func:`campaigns.sending.worker.run_batch`, the body of the ``send_batch_job`` RQ job) on one
    campaign; the stand-in answers after 100 ms and enforces its limit (50/s, then 500/s). The limit
    reaches the workers the documented way: ``GET /v2/email/account`` answers the configured
    ``MaxSendRate``, which :func:`campaigns.sending.ratelimit.provider_rate` reads. Counted at the
    stand-in (arrival times of accepted calls): the sustained rate of each phase, the most acceptances
    in one second (whole seconds, as the stand-in counts them; the sliding-window maximum is shown
    too), throttling answers, and how long
    after the change the new rate showed (the first moment from which a quarter second holds at least
    95 % of the new rate's share).

The workers reach the stand-in through ``AWS_ENDPOINT_URL_SESV2`` with dummy credentials; nothing
leaves the machine.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
GOAL_PER_CORE = 1000
GOAL_SUSTAINED = 0.97
GOAL_EFFECT_SECONDS = 1.0
WORKERS = 4
LATENCY_MS = 100
RATES = (50.0, 500.0)
REGION = "eu-central-1"
SETTLE = 3.0  # seconds between the first accepted send and the start of phase 1


@dataclass
class Standin:
    process: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.url + path, data=data, method="POST" if data is not None else "GET")
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - our own local server
            result: dict[str, Any] = json.loads(response.read())
        return result

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_standin(**config: float) -> Standin:
    """The stand-in in its own process, on a free local port."""
    args = [sys.executable, "-m", "campaigns.benchmarks.ses_standin", "--port", "0"]
    for name, value in config.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().split()
    if len(line) != 2 or line[0] != "listening":
        process.kill()
        raise RuntimeError("the SES stand-in did not start")
    return Standin(process, int(line[1]))


def aws_environment(standin: Standin) -> dict[str, str]:
    """Environment that points boto3 (and our fast path) at the stand-in, with dummy credentials."""
    return {
        "AWS_ENDPOINT_URL_SESV2": standin.url,
        "AWS_ACCESS_KEY_ID": "AKIDSTANDIN",
        "AWS_SECRET_ACCESS_KEY": "standin-secret",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
    }


# --- (a) the send path ----------------------------------------------------------------------------


def _sample_message() -> bytes:
    from campaigns.benchmarks.render import canonical
    from campaigns.rendering import prepare

    data = canonical()
    prepared = prepare(data.template, data.rules)
    rendered = prepared.render(data.contact, {}, data.message)
    return prepared.build_mime(
        rendered, from_header=("XES Bench", "news@bench.example"), to="reader@example.net", message_id_domain="x"
    )


def _cpu_per_call(provider: Any, raw: bytes, n: int) -> tuple[float, float]:
    """(CPU seconds per call, wall calls per second) of ``n`` sequential ``send_raw`` calls."""
    from deliverability.models import ProviderSetup

    setup = ProviderSetup(sending_account_id=1, provider="ses", configuration_set="xes-acct-1", tenant="xes-acct-1")
    tags = {"xes_account": "1", "xes_campaign": "1", "xes_message": "0"}

    def send() -> None:
        provider.send_raw(setup, raw, from_address="news@bench.example", recipients=["reader@example.net"], tags=tags)

    for _i in range(min(200, n)):  # warm up: connection pool, credentials, code paths
        send()
    cpu, wall = time.process_time(), time.perf_counter()
    for _i in range(n):
        send()
    return (time.process_time() - cpu) / n, n / (time.perf_counter() - wall)


def measure_send_path(n: int = 5000) -> list[dict[str, Any]]:
    from deliverability.providers.ses import SesProvider, make_client

    standin = start_standin()
    saved = {k: os.environ.get(k) for k in aws_environment(standin)}
    os.environ.update(aws_environment(standin))
    try:
        raw = _sample_message()
        fast_cpu, fast_wall = _cpu_per_call(SesProvider(region=REGION), raw, n)
        boto_n = max(500, n // 4)
        boto_cpu, boto_wall = _cpu_per_call(SesProvider(client=make_client(REGION), region=REGION), raw, boto_n)
        accepted = len(standin.call("/_standin/stats")["accepted"])
    finally:
        standin.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    expected = n + boto_n + min(200, n) + min(200, boto_n)
    return [
        {
            "measure": "(a) ses send_raw: SigV4 signer + pooled connection",
            "setting": f"{n} x {len(raw) // 1024} KB, no latency",
            "value": f"{1 / fast_cpu:,.0f} msg/s per core ({fast_cpu * 1000:.3f} ms CPU/call; {fast_wall:,.0f}/s wall)",
            "goal": f">= {GOAL_PER_CORE}/s per core",
            "ok": 1 / fast_cpu >= GOAL_PER_CORE and accepted == expected,
        },
        {
            "measure": "(a) boto3 client.send_email (comparison)",
            "setting": f"{boto_n} x {len(raw) // 1024} KB, no latency",
            "value": f"{1 / boto_cpu:,.0f} msg/s per core ({boto_cpu * 1000:.3f} ms CPU/call; {boto_wall:,.0f}/s wall)",
            "goal": f"ours {boto_cpu / fast_cpu:.1f}x faster",
            "ok": None,
        },
    ]


# --- (b) rate adherence ---------------------------------------------------------------------------


def _max_in_window(stamps: list[float], window: float = 1.0) -> int:
    """The most arrivals inside any ``window`` seconds (sliding)."""
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _effect_delay(stamps: list[float], changed_at: float, rate: float, span: float = 0.25) -> float | None:
    """Seconds from ``changed_at`` until the first moment from which ``span`` seconds hold at least
    95 % of ``rate * span`` arrivals (None: never)."""
    after = [s for s in stamps if s >= changed_at]
    need = math.ceil(0.95 * rate * span)
    for i, stamp in enumerate(after):
        j = i + need - 1
        if j < len(after) and after[j] - stamp < span:
            return stamp - changed_at
    return None


def _start_workers(account_id: int, until: float, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    args = [sys.executable, "manage.py", "bench_ses", "--worker", str(account_id), "--until", f"{until:.3f}"]
    return [
        subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _n in range(WORKERS)
    ]


def work(account_id: int, until: float) -> int:
    """A worker process of the benchmark: the real batch function in a loop, as ``send_batch_job`` runs
    it, until killed or ``until`` (Unix time). Returns the rows it claimed."""
    from campaigns.sending.worker import run_batch

    claimed = 0
    while time.time() < until:
        n = run_batch(account_id)
        claimed += n
        if not n:
            time.sleep(0.05)
    return claimed


def measure_rate(seconds: float = 60.0) -> list[dict[str, Any]]:
    """Phase 1 at ``RATES[0]``, then the stand-in's limit changes to ``RATES[1]`` for phase 2."""
    import django_rq

    from campaigns.benchmarks.world import cleanup, make_world
    from campaigns.sending import queue_campaign
    from deliverability.models import ProviderSetup

    low, high = RATES
    recipients = int((low + high) * seconds * 1.1) + 1000  # more than the workers can send
    cleanup()
    world = make_world(recipients)
    ProviderSetup.objects.filter(sending_account=world.account).update(provider="ses", tenant="")
    campaign = world.campaign("SES rate")
    queue_campaign(campaign.pk)
    redis = django_rq.get_connection("sending")
    for key in redis.scan_iter("xes:sending:*"):  # earlier runs' rate, slots and counters
        redis.delete(key)

    standin = start_standin(rate=low, latency_ms=LATENCY_MS)
    env = dict(os.environ)
    env.update(aws_environment(standin))
    env.pop("XES_SENDING_PROVIDER", None)
    # The workers run until stopped; phase 1 starts with the first accepted send (after the workers
    # have started up), phase 2 with the change of the limit. A safety deadline ends forgotten workers.
    workers = _start_workers(world.account.pk, time.time() + 2 * seconds + 300, env)
    outputs: list[str] = []
    try:
        deadline = time.time() + 120
        while not standin.call("/_standin/stats")["accepted"]:
            if time.time() > deadline or any(w.poll() is not None for w in workers):
                raise RuntimeError("the benchmark workers sent nothing")
            time.sleep(0.1)
        time.sleep(SETTLE)  # the other workers finish starting up
        begin = time.time()
        time.sleep(seconds)
        changed_at = time.time()
        standin.call("/_standin/config", {"rate": high})
        time.sleep(seconds)
        until = time.time()
        stats = standin.call("/_standin/stats")
        for worker in workers:
            if worker.poll() is not None:
                output, _err = worker.communicate()
                outputs.append(output.decode(errors="replace"))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()  # mid-batch: its leased rows go with the benchmark data
            worker.communicate()
        standin.stop()
        cleanup()
        for key in redis.scan_iter("xes:sending:*"):
            redis.delete(key)
    if outputs:
        raise RuntimeError("a benchmark worker stopped early:\n" + outputs[0][-3000:])
    stamps = sorted(stats["accepted"])
    phase1 = [s for s in stamps if begin <= s < changed_at]
    phase2 = [s for s in stamps if changed_at <= s < until]
    rows = []
    for label, rate, phase, start, end in (
        (f"{low:.0f}/s", low, phase1, begin, changed_at),
        (f"{high:.0f}/s", high, phase2, changed_at, until),
    ):
        # Phase 1 starts SETTLE seconds after the first send (workers starting up); phase 2 at the
        # change itself, so the switch-over counts against the sustained rate.
        span = max(end - start, 1e-9)
        sustained = len(phase) / span
        peak = _max_in_window(phase)
        seconds_counts: dict[int, int] = {}
        for stamp in phase:
            seconds_counts[int(stamp)] = seconds_counts.get(int(stamp), 0) + 1
        per_second = max(seconds_counts.values(), default=0)
        rows.append(
            {
                "measure": f"(b) {WORKERS} workers, limit {label}, {LATENCY_MS} ms latency",
                "setting": f"{span:.1f} s, {len(phase)} accepted",
                "value": (
                    f"sustained {sustained:.1f}/s = {sustained / rate:.1%}; "
                    f"max per second {per_second} (any sliding 1 s: {peak})"
                ),
                "goal": f">= {GOAL_SUSTAINED:.0%}, per second <= {rate:.0f}",
                "ok": sustained >= GOAL_SUSTAINED * rate and per_second <= rate,
            }
        )
    delay = _effect_delay(stamps, changed_at, high)
    rows.append(
        {
            "measure": f"(b) limit {low:.0f} -> {high:.0f}/s takes effect",
            "setting": "change at the stand-in",
            "value": "never" if delay is None else f"{delay:.2f} s",
            "goal": f"<= {GOAL_EFFECT_SECONDS:.0f} s",
            "ok": delay is not None and delay <= GOAL_EFFECT_SECONDS,
        }
    )
    rows.append(
        {
            "measure": "(b) throttling answers (HTTP 429 TooManyRequestsException)",
            "setting": f"stand-in bucket {0.1:.1f} s",
            "value": str(stats["throttled"]),
            "goal": "0",
            "ok": stats["throttled"] == 0 and stats["bad"] == 0,
        }
    )
    return rows


def run(seconds: float = 60.0, n: int = 5000) -> list[dict[str, Any]]:
    """Both measurements; rows for :func:`format_table`."""
    return measure_send_path(n) + measure_rate(seconds)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``run()`` rows."""
    columns = ["measure", "setting", "value", "goal", "ok"]
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
