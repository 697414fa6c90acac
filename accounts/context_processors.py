"""Template context: the active membership and what its role may do."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from accounts.constants import ROLE_PERMS
from accounts.models import Membership


def membership(request: HttpRequest) -> dict[str, Any]:
    current = getattr(request, "membership", None)
    if not current:
        return {"membership": None, "can": {}, "all_memberships": []}
    return {
        "membership": current,
        "can": {p.value: True for p in ROLE_PERMS[current.role]},
        # For the organisation switcher; lazy, so pages that do not render it pay nothing.
        "all_memberships": SimpleLazyObject(
            lambda: list(Membership.objects.filter(user_id=current.user_id).select_related("organisation"))
        ),
    }
