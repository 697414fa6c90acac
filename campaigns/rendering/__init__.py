"""Personalised e-mail content: Liquid (with resource limits), MJML, CSS inlining, text versions and
a fast MIME builder. Prepare a template once with :func:`prepare`, then per recipient
``prepared.render(contact, data, message)`` and ``prepared.build_mime(rendered, ...)``."""

from __future__ import annotations

from campaigns.rendering.environment import LiquidProblem, parse_liquid
from campaigns.rendering.mime import HeaderError, clean_header_value
from campaigns.rendering.prepare import (
    CONTEXT_NAMES,
    PreparedTemplate,
    Rendered,
    RenderError,
    TemplateError,
    TemplateProblem,
    check_template,
    html_to_text,
    prepare,
)

__all__ = [
    "CONTEXT_NAMES",
    "HeaderError",
    "LiquidProblem",
    "PreparedTemplate",
    "RenderError",
    "Rendered",
    "TemplateError",
    "TemplateProblem",
    "check_template",
    "clean_header_value",
    "html_to_text",
    "parse_liquid",
    "prepare",
]
