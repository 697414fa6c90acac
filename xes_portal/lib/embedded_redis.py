"""The Redis-compatible server that `make run` embeds (fakeredis over TCP), so that the portal, the
worker and the cron scheduler share one queue without a Redis installation.

fakeredis lacks ``INFO``, which RQ asks once per connection for the server version. Its TCP server
answers an unknown command with an error and then closes the connection, and the next command on
that pooled connection fails ("Connection closed by server"): the worker died now and then. So
the embedded server answers ``INFO`` with the version it emulates.
"""

from __future__ import annotations

import threading
from typing import Any

from fakeredis import TcpFakeServer
from fakeredis._commands import command
from fakeredis._socket._fakesocket import FakeSocket

EMULATED_VERSION = "8.0.0"


def xes_info(self: Any, *sections: bytes) -> bytes:
    return f"# Server\r\nredis_version:{EMULATED_VERSION}\r\nredis_mode:standalone\r\n".encode()


def _install_info_command() -> None:
    if not hasattr(FakeSocket, "xes_info"):
        # fakeredis dispatches a command to the socket method named like the decorated function.
        FakeSocket.xes_info = command((), (bytes,), name="info")(xes_info)  # type: ignore[attr-defined]


def start(port: int) -> TcpFakeServer:
    """Serve on 127.0.0.1:``port`` from a daemon thread; ``shutdown()`` stops it."""
    _install_info_command()
    server = TcpFakeServer(("127.0.0.1", port), server_type="redis")
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="embedded-redis").start()
    return server
