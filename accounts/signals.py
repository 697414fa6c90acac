"""Signals the accounts app sends to higher apps (which it must not import)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after an organisation's plan-relevant flags changed (cross-media, cloud e-media);
# arguments: ``organisation``. The plans app re-evaluates the included STARTER plan.
organisation_flags_changed = Signal()
