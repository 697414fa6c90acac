"""Admin: suppressions."""

from __future__ import annotations
