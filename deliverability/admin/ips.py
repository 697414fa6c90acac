"""Admin: ips."""

from __future__ import annotations
