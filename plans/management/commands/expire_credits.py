"""``manage.py expire_credits``: expire the unused e-mails of every ended term now.

The hourly job (:func:`plans.jobs.expire_terms_job`) does the same; this is the by-hand run.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.utils.translation import ngettext

from plans import services


class Command(BaseCommand):
    help = "Expire the unused e-mails of every plan term that has ended (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        count = services.expire_due_terms()
        message = ngettext("%(n)d term expired.", "%(n)d terms expired.", count) % {"n": count}
        self.stdout.write(self.style.SUCCESS(message))
