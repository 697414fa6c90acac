"""Rendering a parsed Liquid template with the common case taken out of the interpreter.

A campaign template is mostly static text with ``{{ contact.first_name }}``-style slots. Rendering
it through python-liquid costs a context lookup chain, a limited output stream that re-encodes every
write, and a node dispatch per slot. :class:`FastTemplate` splits the top level of the parsed
template once into static chunks, simple slots (a path of names into our context dicts, without
filters) and other nodes (``if``, ``for``, filtered output, ...). Per recipient, static chunks are
copied, slots are looked up directly in the dicts and stringified exactly as Liquid does (including
HTML escaping), and every other node is rendered by python-liquid itself, with its resource limits.

Anything the fast path is not sure about falls back to python-liquid: a slot whose path does not
resolve through plain dicts, and whole templates that assign to one of the context names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from liquid.builtin.content import ContentNode
from liquid.builtin.expressions import FilteredExpression, Path
from liquid.builtin.output import OutputNode
from liquid.exceptions import LiquidError, LiquidInterrupt, LiquidSyntaxError, OutputStreamLimitError
from liquid.output import LimitedStringIO
from liquid.stringify import to_liquid_string
from markupsafe import escape

if TYPE_CHECKING:
    from liquid import BoundTemplate
    from liquid.ast import Node

__all__ = ["FastTemplate"]

_STATIC = 0
_SLOT = 1
_NODE = 2


class FastTemplate:
    """A Liquid template rendered with static chunks and direct slots (see the module docstring)."""

    def __init__(self, template: BoundTemplate, protected_names: tuple[str, ...]) -> None:
        self.template = template
        self.env = template.env
        self.autoescape = template.env.autoescape
        self.limit = template.env.output_stream_limit
        analysis = template.analyze(include_partials=False)
        # A template that assigns to a context name would make a direct lookup read the wrong value.
        self.enabled = not any(name in analysis.locals for name in protected_names)
        self.steps: list[tuple[int, Any]] = []
        self.needs_context = False
        for node in template.nodes:
            self._add(node)

    def _add(self, node: Node) -> None:
        if isinstance(node, ContentNode):
            if self.steps and self.steps[-1][0] == _STATIC:
                self.steps[-1] = (_STATIC, self.steps[-1][1] + node.text)
            else:
                self.steps.append((_STATIC, node.text))
            return
        if self.enabled and isinstance(node, OutputNode):
            expression = node.expression
            if (
                isinstance(expression, FilteredExpression)
                and not expression.filters
                and isinstance(expression.left, Path)
                and all(isinstance(segment, str) for segment in expression.left.path)
            ):
                self.steps.append((_SLOT, (tuple(expression.left.path), node)))
                return
        self.needs_context = True
        self.steps.append((_NODE, node))

    def render(self, namespace: Mapping[str, Any]) -> str:
        """The template rendered with ``namespace`` (the same result as ``template.render``)."""
        if not self.enabled:
            return self.template.render(namespace)
        out: list[str] = []
        append = out.append
        autoescape = self.autoescape
        context = None
        buffer: LimitedStringIO | None = None
        for kind, value in self.steps:
            if kind == _STATIC:
                append(value)
                continue
            if kind == _SLOT:
                path, node = value
                obj: Any = namespace
                for segment in path:
                    if type(obj) is dict and segment in obj:
                        obj = obj[segment]
                    else:
                        break
                else:
                    if type(obj) is str:
                        append(escape(obj) if autoescape else obj)
                    else:
                        append(to_liquid_string(obj, autoescape))
                    continue
            else:
                node = value
            # Everything else, and slots the direct lookup cannot resolve: python-liquid renders.
            if context is None:
                template = self.template
                context = template.context_class(template, globals=template.make_globals(dict(namespace)))
                buffer = LimitedStringIO(limit=self.limit) if self.limit is not None else None
            append(self._render_node(node, context, buffer))
        result = "".join(out)
        if self.limit is not None and len(result) * 4 > self.limit and len(result.encode("utf-8")) > self.limit:
            raise OutputStreamLimitError("output stream limit reached", token=None)
        return result

    def _render_node(self, node: Node, context: Any, buffer: LimitedStringIO | None) -> str:
        """One node through python-liquid, with its limits and error handling."""
        target = buffer
        if target is None:
            target = LimitedStringIO(limit=10**12)
        start = target.tell()
        try:
            node.render(context, target)
        except LiquidInterrupt as err:
            raise LiquidSyntaxError(f"unexpected '{err}'", token=node.token) from err
        except LiquidError as err:
            if err.token is None:
                err.token = node.token
            raise
        target.seek(start)
        text = target.read()
        return text
