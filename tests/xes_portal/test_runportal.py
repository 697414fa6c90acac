"""`make run`'s last step: portal, worker and embedded queue start with no PostgreSQL or Redis,
a job really goes through the queue, and Ctrl-C stops everything cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis
from rq import Queue

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_error = exc
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: {last_error}")


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_runportal_serves_runs_jobs_and_stops_cleanly(tmp_path: Path, stop_signal: signal.Signals) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(DJANGO_ENV="development", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=180)
    web_port, queue_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runportal", "--addr", f"127.0.0.1:{web_port}", "--redis-port", str(queue_port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # As a shell's background job would: SIGINT ignored on entry, which the command must undo.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        # given: the portal answers and a worker has registered with the embedded queue server
        def health() -> dict | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/healthz", timeout=2) as response:
                body = json.load(response)
            return body if body["workers"] >= 1 else None

        body = _wait_for(health, 60, "portal and worker")
        assert body["database"]["vendor"] == "sqlite"
        assert body["redis"] == {"ok": True, "configured": True}

        # when: a job is put on the embedded queue
        queue = Queue("default", connection=redis.Redis(host="127.0.0.1", port=queue_port))
        job = queue.enqueue("builtins.len", "xes")

        # then: the worker runs it
        _wait_for(lambda: job.get_status(refresh=True) == "finished", 30, "the job to finish")
        assert job.return_value() == 3
    except AssertionError as exc:
        proc.kill()
        raise AssertionError(f"{exc}\n--- runportal output ---\n{proc.communicate(timeout=30)[0]}") from exc
    finally:
        if proc.poll() is None:
            proc.send_signal(stop_signal)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "stopped." in output
