"""A small HTTP/1.1 load generator (no dependencies; ``wrk`` is not installed here).

Run as ``python -m campaigns.benchmarks.loadgen HOST PORT SECONDS CONCURRENCY PATHS_FILE`` (one
path per line, taken round-robin); prints one JSON object: requests answered per status, errors,
requests per second and latency percentiles (ms). Each connection keeps one request in flight and
reuses the connection while the server allows (``Connection: close`` makes it reconnect). Uses
:mod:`asyncio` protocols, not streams, to keep the generator's own CPU small.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from functools import partial
from typing import Any

_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)\s*$")
_CLOSE = re.compile(rb"(?im)^connection:\s*close\s*$")
_CHUNKED = re.compile(rb"(?im)^transfer-encoding:\s*chunked\s*$")
AGENT = b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Thunderbird/115 xes-bench"


class Generator:
    def __init__(self, host: str, port: int, paths: list[bytes], deadline: float) -> None:
        self.host, self.port, self.paths, self.deadline = host, port, paths, deadline
        self.position = 0
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.by_kind: dict[str, int] = {}
        self.errors = 0
        self.connects = 0

    def next_path(self) -> bytes:
        path = self.paths[self.position % len(self.paths)]
        self.position += 1
        return path

    def done(self) -> bool:
        return time.perf_counter() >= self.deadline


class Connection(asyncio.Protocol):
    def __init__(self, generator: Generator, finished: asyncio.Future[None]) -> None:
        self.generator = generator
        self.finished = finished
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.started = 0.0
        self.path = b""
        self.in_flight = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.generator.connects += 1
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        if self.generator.done():
            self.transport.close()
            return
        self.path = self.generator.next_path()
        self.buffer = b""
        self.in_flight = True
        self.started = time.perf_counter()
        self.transport.write(
            b"GET " + self.path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: " + AGENT + b"\r\nAccept: */*\r\n\r\n"
        )

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end]
        match = _LENGTH.search(head)
        if match is not None:
            if len(self.buffer) < end + 4 + int(match.group(1)):
                return
        elif _CHUNKED.search(head) and not self.buffer.endswith(b"0\r\n\r\n"):
            return  # a chunked body: complete at its last, empty chunk
        generator = self.generator
        generator.latencies.append(time.perf_counter() - self.started)
        try:
            status = int(head[9:12])
        except ValueError:
            generator.errors += 1
            self.in_flight = False
            assert self.transport is not None
            self.transport.close()
            return
        generator.statuses[status] = generator.statuses.get(status, 0) + 1
        kind = self.path[:5].decode()
        generator.by_kind[f"{kind} {status}"] = generator.by_kind.get(f"{kind} {status}", 0) + 1
        self.in_flight = False
        if _CLOSE.search(head):
            assert self.transport is not None
            self.transport.close()
        else:
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.in_flight:
            self.generator.errors += 1
        if not self.finished.done():
            self.finished.set_result(None)


async def _worker(generator: Generator) -> None:
    loop = asyncio.get_running_loop()
    while not generator.done():
        finished: asyncio.Future[None] = loop.create_future()
        try:
            await loop.create_connection(partial(Connection, generator, finished), generator.host, generator.port)
        except OSError:
            generator.errors += 1
            await asyncio.sleep(0.01)
            continue
        await finished


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(host: str, port: int, seconds: float, concurrency: int, paths: list[bytes]) -> dict[str, Any]:
    start = time.perf_counter()
    generator = Generator(host, port, paths, start + seconds)
    await asyncio.gather(*(_worker(generator) for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    answered = len(generator.latencies)
    return {
        "seconds": round(elapsed, 2),
        "answered": answered,
        "statuses": {str(k): v for k, v in sorted(generator.statuses.items())},
        "by_kind": generator.by_kind,
        "errors": generator.errors,
        "connects": generator.connects,
        "rps": round(answered / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(percentile(generator.latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(generator.latencies, 0.99) * 1000, 2),
        "max_ms": round(max(generator.latencies, default=0.0) * 1000, 2),
    }


def main(argv: list[str]) -> None:
    host, port, seconds, concurrency, paths_file = argv
    with open(paths_file, "rb") as handle:
        paths = [line.strip() for line in handle if line.strip()]
    result = asyncio.run(run(host, int(port), float(seconds), int(concurrency), paths))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
