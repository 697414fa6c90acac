"""Helpers shared by the apps' admin modules."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from django.utils.html import format_html


def admin_link(obj: Any, label: str | None = None) -> str:
    """A link to ``obj``'s admin change page, or a dash when there is no object."""
    if obj is None:
        return "—"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label or str(obj))
