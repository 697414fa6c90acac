"""Admin: domains."""

from __future__ import annotations
