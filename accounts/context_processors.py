"""Template context: the active membership and what its role may do."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.constants import ROLE_PERMS


def membership(request: HttpRequest) -> dict[str, Any]:
    current = getattr(request, "membership", None)
    if not current:
        return {"membership": None, "can": {}}
    return {"membership": current, "can": {p.value: True for p in ROLE_PERMS[current.role]}}
