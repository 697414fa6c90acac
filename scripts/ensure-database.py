"""Create the PostgreSQL database named in a URL if it does not exist (used by `make bench`)."""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

import psycopg
from psycopg import sql


def main(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            sys.stdout.write(f"created database {name}\n")


if __name__ == "__main__":
    main(sys.argv[1])
