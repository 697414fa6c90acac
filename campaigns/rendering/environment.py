"""The Liquid environments for customer-authored content (templates and value rules).

Customer templates are untrusted: they run with resource limits (loop iterations, output size,
context depth, nesting), may not include or render other templates, may only use whitelisted
filters, and see nothing but the mappings we pass in (``contact``, ``rules``, ``data``, ``message``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from django.utils.translation import gettext as _
from liquid import BaseLoader, BoundTemplate, Environment
from liquid.exceptions import LiquidError, LiquidSyntaxError, TemplateNotFoundError
from liquid.tag import Tag

if TYPE_CHECKING:
    from liquid.ast import Node
    from liquid.loader import TemplateSource
    from liquid.stream import TokenStream

__all__ = ["HTML_ENV", "TEXT_ENV", "LiquidProblem", "liquid_error_position", "parse_liquid"]

LOOP_ITERATION_LIMIT = 10_000
OUTPUT_LIMIT_BYTES = 2_000_000
CONTEXT_DEPTH_LIMIT = 10
LOCAL_NAMESPACE_LIMIT_BYTES = 200_000
BLOCK_NESTING_LIMIT = 20

# Pure, cheap filters only. Everything else (including any filter a library may add later) is
# unknown, and unknown filters are errors (``strict_filters``).
ALLOWED_FILTERS = frozenset(
    {
        "abs", "append", "at_least", "at_most", "capitalize", "ceil", "compact", "concat", "date",
        "default", "divided_by", "downcase", "escape", "escape_once", "first", "floor", "join", "last",
        "lstrip", "map", "minus", "modulo", "newline_to_br", "plus", "prepend", "remove", "remove_first",
        "remove_last", "replace", "replace_first", "replace_last", "reverse", "round", "rstrip", "size",
        "slice", "sort", "sort_natural", "split", "squish", "strip", "strip_html", "strip_newlines",
        "sum", "times", "truncate", "truncatewords", "uniq", "upcase", "url_encode", "url_decode",
        "where",
    }
)  # fmt: skip
DISABLED_TAGS = ("include", "render")


class LiquidProblem(ValueError):
    """A Liquid template that cannot be parsed or rendered, with its position when known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.message = message
        self.line = line
        self.column = column
        super().__init__(message if line is None else f"{message} (line {line}, column {column})")


class _RefusingLoader(BaseLoader):
    """E-mail content is self-contained: there are no other templates to load."""

    def get_source(
        self, env: Environment, template_name: str, *, context: Any = None, **kwargs: object
    ) -> TemplateSource:
        raise TemplateNotFoundError(_("Templates cannot load other templates."), token=None)


class _DisabledTag(Tag):
    """Refuses ``include`` and ``render`` while parsing, so the error shows at save time."""

    block = False

    def parse(self, stream: TokenStream) -> Node:
        token = stream.current
        raise LiquidSyntaxError(
            _("The “%(tag)s” tag is not allowed in e-mail templates.") % {"tag": self.name}, token=token
        )


class _ContentEnvironment(Environment):
    loop_iteration_limit: ClassVar[int | None] = LOOP_ITERATION_LIMIT
    output_stream_limit: ClassVar[int | None] = OUTPUT_LIMIT_BYTES
    context_depth_limit: ClassVar[int] = CONTEXT_DEPTH_LIMIT
    local_namespace_limit: ClassVar[int | None] = LOCAL_NAMESPACE_LIMIT_BYTES
    block_nesting_limit: ClassVar[int] = BLOCK_NESTING_LIMIT

    def setup_tags_and_filters(self, *, extra: bool = False) -> None:
        super().setup_tags_and_filters(extra=False)
        for name in DISABLED_TAGS:
            tag = type(f"Disabled_{name}", (_DisabledTag,), {"name": name})
            self.add_tag(tag)
        self.filters = {name: func for name, func in self.filters.items() if name in ALLOWED_FILTERS}


HTML_ENV = _ContentEnvironment(autoescape=True, loader=_RefusingLoader(), strict_filters=True)
TEXT_ENV = _ContentEnvironment(autoescape=False, loader=_RefusingLoader(), strict_filters=True)


def liquid_error_position(error: LiquidError, source: str) -> tuple[int | None, int | None]:
    """1-based line and column of a Liquid error in ``source``; the end of the source when the
    error has no position (for example a block that is never closed)."""
    token = error.token
    if token is not None and token.start_index >= 0:
        index = token.start_index
    elif isinstance(error, LiquidSyntaxError):
        index = len(source)
    else:
        return None, None
    line = source.count("\n", 0, index) + 1
    column = index - (source.rfind("\n", 0, index) + 1) + 1
    return line, column


def liquid_message(error: BaseException) -> str:
    """The first line of a Liquid error, without its source excerpt."""
    if isinstance(error, LiquidError):
        return str(error.message)
    return str(error).split("\n", 1)[0]


def parse_liquid(source: str, *, autoescape: bool) -> BoundTemplate:
    """Parse customer Liquid; raises :class:`LiquidProblem` with line and column."""
    env = HTML_ENV if autoescape else TEXT_ENV
    try:
        return env.from_string(source)
    except LiquidError as exc:
        line, column = liquid_error_position(exc, source)
        raise LiquidProblem(liquid_message(exc), line, column) from exc
