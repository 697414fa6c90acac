"""Template helpers of the deliverability pages and e-mails."""

from __future__ import annotations

from typing import Any

from django import template

from deliverability.dns.messages import describe

register = template.Library()


@register.filter
def describe_problem(problem: dict[str, Any]) -> str:
    """A stored DNS finding in plain words, in the language active while rendering."""
    return describe(problem)
