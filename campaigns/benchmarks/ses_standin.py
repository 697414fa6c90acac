"""A local stand-in for the Amazon SES v2 endpoints that the sending path uses (``make bench``, tests).

It answers like SES v2 (REST-JSON, as botocore's ``sesv2`` service model describes it):

- ``POST /v2/email/outbound-emails`` (SendEmail): the JSON body is parsed and checked (sender,
  recipients, raw content that is valid base64); 200 with ``{"MessageId": ...}``. Nothing is verified
  (no signature, no identities). A token bucket of ``rate`` tokens per second (``burst`` seconds of
  capacity) answers what SES answers above its maximum send rate: HTTP 429, header
  ``x-amzn-ErrorType: TooManyRequestsException`` and ``{"message": "Maximum sending rate exceeded."}``
  (SES v2 models ``TooManyRequestsException`` with status 429). A malformed request gets 400
  ``BadRequestException``. Every answer waits ``latency_ms`` first (without holding up other requests:
  one thread per connection).
- ``GET /v2/email/account`` (GetAccount): ``SendQuota.MaxSendRate`` is the configured rate, so the
  portal's rate limiter (``provider.quota().max_send_rate``) follows it.

Control endpoints (not SES): ``POST /_standin/config`` (JSON ``rate``, ``latency_ms``, ``burst``;
``rate`` 0 = no limit), ``GET /_standin/stats`` (accepted arrival times as Unix seconds, throttled
and bad-request counts, bytes), ``POST /_standin/reset``.

Run it as ``python -m campaigns.benchmarks.ses_standin --port 0``: it prints ``listening <port>``
on the first line of its output. It uses the standard library only, so it starts in milliseconds
and runs in a process of its own (its CPU time is never charged to the client being measured).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import itertools
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SEND_PATH = "/v2/email/outbound-emails"
ACCOUNT_PATH = "/v2/email/account"


class State:
    """Configuration and counters, shared by the handler threads (one lock)."""

    def __init__(
        self, rate: float = 0.0, latency_ms: float = 0.0, burst: float = 0.1, keep_bodies: bool = False
    ) -> None:
        self.keep_bodies = keep_bodies  # tests read what was sent
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.rate = rate
        self.latency_ms = latency_ms
        self.burst = burst
        self.tokens = self.capacity()
        self.refilled = time.monotonic()
        self.reset()

    def capacity(self) -> float:
        """Bucket size: ``burst`` seconds of sending, at least one message."""
        return max(1.0, self.rate * self.burst)

    def reset(self) -> None:
        self.accepted: list[float] = []
        self.bodies: list[dict[str, Any]] = []
        self.throttled = 0
        self.bad = 0
        self.bytes = 0
        self.config_changes: list[tuple[float, float]] = []

    def configure(self, values: dict[str, Any]) -> None:
        with self.lock:
            if "latency_ms" in values:
                self.latency_ms = float(values["latency_ms"])
            if "burst" in values:
                self.burst = float(values["burst"])
            if "rate" in values:
                self._refill(time.monotonic())
                self.rate = float(values["rate"])
                # A new limit starts with a full bucket of its own size, like a fresh quota.
                self.tokens = self.capacity()
                self.config_changes.append((time.time(), self.rate))

    def _refill(self, now: float) -> None:
        if self.rate > 0:
            self.tokens = min(self.capacity(), self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now

    def take(self, size: int, arrived: tuple[float, float]) -> str | None:
        """Count a SendEmail that arrived at ``arrived`` (``time.time()``, ``time.monotonic()``); its
        message id, or None when the rate is exceeded."""
        with self.lock:
            if self.rate > 0:
                self._refill(max(arrived[1], self.refilled))
                if self.tokens < 1.0:
                    self.throttled += 1
                    return None
                self.tokens -= 1.0
            self.accepted.append(arrived[0])
            self.bytes += size
            return f"0100018f-standin-{next(self.ids):012d}-000000"


def _check_send(body: dict[str, Any]) -> str:
    """What is wrong with a SendEmail body ('' if nothing): the fields SES itself insists on."""
    if not isinstance(body.get("FromEmailAddress"), str) or "@" not in body["FromEmailAddress"]:
        return "Missing or invalid FromEmailAddress."
    to = (body.get("Destination") or {}).get("ToAddresses")
    if not isinstance(to, list) or not to:
        return "Missing Destination.ToAddresses."
    raw = ((body.get("Content") or {}).get("Raw") or {}).get("Data")
    if not isinstance(raw, str):
        return "Missing Content.Raw.Data."
    try:
        base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return "Content.Raw.Data is not base64."
    for tag in body.get("EmailTags") or []:
        if not isinstance(tag, dict) or not tag.get("Name") or "Value" not in tag:
            return "Invalid EmailTags."
    return ""


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the client's pooled connections stay open
        disable_nagle_algorithm = True  # headers and body leave at once (no delayed-ACK stalls)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _answer(self, status: int, payload: dict[str, Any], error_type: str = "") -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", f"standin-{time.monotonic_ns()}")
            if error_type:
                self.send_header("x-amzn-ErrorType", f"{error_type}:")
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, error_type: str, message: str) -> None:
            self._answer(status, {"message": message}, error_type)

        def _wait(self) -> None:
            if state.latency_ms > 0:
                time.sleep(state.latency_ms / 1000)

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            # A request counts from the moment its headers are in, as SES counts arrivals, not from
            # when this process got round to parsing its body.
            arrived = (time.time(), time.monotonic())
            raw = self._body()
            path = self.path.split("?", 1)[0]
            if path == SEND_PATH:
                self._send_email(raw, arrived)
            elif path == "/_standin/config":
                state.configure(json.loads(raw or b"{}"))
                self._answer(200, {"rate": state.rate, "latency_ms": state.latency_ms, "burst": state.burst})
            elif path == "/_standin/reset":
                with state.lock:
                    state.reset()
                self._answer(200, {})
            else:
                self._error(404, "NotFoundException", f"Unknown path {path}.")

        def _send_email(self, raw: bytes, arrived: tuple[float, float]) -> None:
            try:
                body = json.loads(raw)
                problem = _check_send(body) if isinstance(body, dict) else "The body is not a JSON object."
            except (ValueError, UnicodeDecodeError):
                problem = "The body is not JSON."
            if problem:
                with state.lock:
                    state.bad += 1
                self._wait()
                self._error(400, "BadRequestException", problem)
                return
            message_id = state.take(len(raw), arrived)
            if message_id is not None and state.keep_bodies:
                with state.lock:
                    state.bodies.append(body)
            self._wait()
            if message_id is None:
                self._error(429, "TooManyRequestsException", "Maximum sending rate exceeded.")
            else:
                self._answer(200, {"MessageId": message_id})

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == ACCOUNT_PATH:
                self._answer(
                    200,
                    {
                        "SendQuota": {
                            "Max24HourSend": -1.0,
                            "MaxSendRate": state.rate,
                            "SentLast24Hours": float(len(state.accepted)),
                        },
                        "SendingEnabled": True,
                        "ProductionAccessEnabled": True,
                        "EnforcementStatus": "HEALTHY",
                        "DedicatedIpAutoWarmupEnabled": False,
                    },
                )
            elif path == "/_standin/stats":
                with state.lock:
                    stats = {
                        "accepted": list(state.accepted),
                        "throttled": state.throttled,
                        "bad": state.bad,
                        "bytes": state.bytes,
                        "config_changes": list(state.config_changes),
                        "rate": state.rate,
                    }
                self._answer(200, stats)
            else:
                self._error(404, "NotFoundException", f"Unknown path {path}.")

    return Handler


class StandinServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # several worker processes open their pools at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away (a benchmark worker is killed at the end) is not an error here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def serve(host: str = "127.0.0.1", port: int = 0, **config: Any) -> tuple[StandinServer, State]:
    """A stand-in server (not started yet: call ``serve_forever``, e.g. in a thread); ``config``
    goes to :class:`State`."""
    state = State(**config)
    return StandinServer((host, port), make_handler(state)), state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0, help="max send rate per second (0: none)")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--burst", type=float, default=0.1, help="bucket size in seconds of sending")
    args = parser.parse_args(argv)
    # One thread per client connection: a thread that a request wakes should get the interpreter
    # soon, so that arrival times are read when the request arrives (the default waits up to 5 ms).
    sys.setswitchinterval(0.0005)
    server, _state = serve(args.host, args.port, rate=args.rate, latency_ms=args.latency_ms, burst=args.burst)
    sys.stdout.write(f"listening {server.server_address[1]}\n")
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
