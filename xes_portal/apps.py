"""The project package: settings, URLs, cross-app helpers (``lib/``), health, demo data."""

from __future__ import annotations

from django.apps import AppConfig


class XesPortalConfig(AppConfig):
    name = "xes_portal"
    verbose_name = "XES Portal"
