"""Start everything `make run` needs: an embedded Redis-compatible server, an RQ worker and the
web server. No PostgreSQL or Redis installation is needed; Ctrl-C stops all of it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from xes_portal.lib import embedded_redis

QUEUES = ("default", "sending", "low")


class Command(BaseCommand):
    help = "Run the portal, a worker and (without REDIS_URL) an embedded queue server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument("--redis-port", type=int, default=int(os.environ.get("EMBEDDED_REDIS_PORT", "6390")))

    def handle(self, *args: Any, **options: Any) -> None:
        # Ctrl-C and `kill` both stop everything cleanly (a shell's background job inherits an
        # ignored SIGINT, so install the handler explicitly).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        env = os.environ.copy()
        server = None
        if not env.get("REDIS_URL"):
            server = embedded_redis.start(options["redis_port"])
            env["REDIS_URL"] = f"redis://127.0.0.1:{options['redis_port']}/0"
            self.stdout.write(f"embedded queue server on {env['REDIS_URL']}")
        manage = [sys.executable, os.path.abspath(sys.argv[0])]
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
            self.stdout.write("stopped.")
        if crashed:
            raise CommandError("the web server or the worker stopped unexpectedly (see above)")


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
