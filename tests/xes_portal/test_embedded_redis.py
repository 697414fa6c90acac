"""The embedded queue server of `make run` answers INFO, which RQ asks on every new connection."""

from __future__ import annotations

import socket

import redis

from xes_portal.lib import embedded_redis


def test_info_is_answered_and_the_connection_stays_usable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = embedded_redis.start(port)
    try:
        conn = redis.Redis(host="127.0.0.1", port=port, single_connection_client=True)

        assert conn.info("server")["redis_version"] == embedded_redis.EMULATED_VERSION
        # the same connection (fakeredis closes it after an unknown command) still works
        assert conn.set("key", "value")
        assert conn.get("key") == b"value"
    finally:
        server.shutdown()
        server.server_close()
