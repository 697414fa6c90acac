"""App config for :mod:`deliverability`."""

from __future__ import annotations

from django.apps import AppConfig


class DeliverabilityConfig(AppConfig):
    name = "deliverability"
