"""App config for :mod:`plans`."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PlansConfig(AppConfig):
    name = "plans"
    verbose_name = _("Plans and credits")

    def ready(self) -> None:
        from accounts.services import set_sending_account_limit
        from accounts.signals import organisation_flags_changed
        from plans.entitlements import sending_accounts_allowed

        organisation_flags_changed.connect(_enqueue_starter_sync, dispatch_uid="plans.starter_sync")
        # Accounts asks "how many sending accounts may this organisation have?" without importing
        # plans: the first is included, each Additional-account add-on allows one more.
        set_sending_account_limit(sending_accounts_allowed)


def _enqueue_starter_sync(sender: Any, organisation: Any, **kwargs: Any) -> None:
    import django_rq

    from plans.jobs import sync_starter_job

    # django-rq enqueues after the surrounding transaction commits.
    django_rq.get_queue("default").enqueue(sync_starter_job, organisation.pk)
