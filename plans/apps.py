"""App config for :mod:`plans`."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PlansConfig(AppConfig):
    name = "plans"
    verbose_name = _("Plans and credits")

    def ready(self) -> None:
        from accounts.signals import organisation_flags_changed

        organisation_flags_changed.connect(_enqueue_starter_sync, dispatch_uid="plans.starter_sync")


def _enqueue_starter_sync(sender: Any, organisation: Any, **kwargs: Any) -> None:
    import django_rq

    from plans.jobs import sync_starter_job

    # django-rq enqueues after the surrounding transaction commits.
    django_rq.get_queue("default").enqueue(sync_starter_job, organisation.pk)
