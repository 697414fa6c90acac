"""Start everything `make run` needs: an embedded PostgreSQL and Redis-compatible server (unless
DATABASE_URL / REDIS_URL point elsewhere), the migrations and demo data, an RQ worker, the periodic
jobs and the web server. No PostgreSQL or Redis installation is needed; Ctrl-C stops all of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from xes_portal.lib import embedded_postgres, embedded_redis

QUEUES = ("default", "sending", "low")


class Command(BaseCommand):
    help = "Run the portal, a worker and (without REDIS_URL) an embedded queue server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument("--redis-port", type=int, default=int(os.environ.get("EMBEDDED_REDIS_PORT", "6390")))
        parser.add_argument("--no-demo", action="store_true", help="skip migrating and loading the demo data")

    def handle(self, *args: Any, **options: Any) -> None:
        # Ctrl-C and `kill` both stop everything cleanly (a shell's background job inherits an
        # ignored SIGINT, so install the handler explicitly).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        env = os.environ.copy()
        server = None
        database = None
        if not env.get("DATABASE_URL"):
            database, env["DATABASE_URL"] = embedded_postgres.start(Path(settings.BASE_DIR) / ".pgdata")
            self.stdout.write("embedded PostgreSQL in .pgdata/")
        if not env.get("REDIS_URL"):
            server = embedded_redis.start(options["redis_port"])
            env["REDIS_URL"] = f"redis://127.0.0.1:{options['redis_port']}/0"
            self.stdout.write(f"embedded queue server on {env['REDIS_URL']}")
        manage = [sys.executable, os.path.abspath(sys.argv[0])]
        if not options["no_demo"]:
            subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, check=True)
            subprocess.run([*manage, "seed_demo"], env=env, check=True)
        children = [
            # No --with-scheduler: RQ's scheduler uses commands the embedded server does not support.
            subprocess.Popen([*manage, "rqworker", *QUEUES], env=env),
            # Periodic jobs (plan expiry, STARTER renewal), declared in xes_portal/cron.py.
            subprocess.Popen([*manage, "rqcron", "xes_portal.cron", "--logging-level", "WARNING"], env=env),
            subprocess.Popen([*manage, "runserver", options["addr"], "--noreload"], env=env),
        ]
        self.stdout.write(self.style.SUCCESS(f"XES Portal: http://{options['addr']}/  (Ctrl-C to stop)"))
        crashed = False
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
            crashed = True
            self.stderr.write("a process of the portal exited; stopping the others.")
        except KeyboardInterrupt:
            pass
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGINT)
            for child in children:
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
            if server is not None:
                server.shutdown()
                server.server_close()
            if database is not None:
                database.cleanup()
            self.stdout.write("stopped.")
        if crashed:
            raise CommandError("the web server or the worker stopped unexpectedly (see above)")


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
