"""Prepare a template once (MJML, CSS inlining, text version, Liquid parsing, MIME skeleton), then
render and build MIME per recipient with as little work as possible.

Everything that does not depend on the recipient happens in :func:`prepare`: MJML is compiled and
CSS inlined *before* personalisation, so a campaign of a million recipients inlines once. Liquid
markup is protected by placeholders while MJML, css-inline and inscriptis process the document, and
restored after; when a tool moved or dropped one (for example Liquid between table rows, which HTML
parsers move out of the table), the step is skipped rather than change what the template means.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import css_inline
from django.utils.translation import gettext as _
from inscriptis import get_text
from inscriptis.model.config import ParserConfig
from liquid.exceptions import LiquidError

from campaigns.models import Contact, Rule, Template
from campaigns.rendering.environment import (
    LiquidProblem,
    liquid_error_position,
    liquid_message,
    parse_liquid,
)
from campaigns.rendering.fast import FastTemplate
from campaigns.rendering.mime import MimeSkeleton, clean_header_value
from campaigns.rules import CompiledRules, RuleError, compile_rules, contact_fields
from campaigns.tracking.links import MarkedLinks, Tracking, apply_marks, mark_links, restore_marks, rewrite_html

if TYPE_CHECKING:
    from liquid import BoundTemplate

__all__ = [
    "CONTEXT_NAMES",
    "PreparedTemplate",
    "RenderError",
    "Rendered",
    "TemplateError",
    "TemplateProblem",
    "check_template",
    "html_to_text",
    "prepare",
]

# The only names a template sees.
CONTEXT_NAMES = ("contact", "rules", "data", "message")

_LIQUID = re.compile(r"{{.*?}}|{%.*?%}", re.S)
_PLACEHOLDER = re.compile(r"<!--xes-liquid-(\d+)-->|xesliquid(\d+)x")
_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.I)
_PREHEADER = (
    '<div style="display:none;font-size:1px;line-height:1px;max-height:0;max-width:0;opacity:0;'
    'overflow:hidden;mso-hide:all;">{{ message.preheader }}</div>'
)
_INLINER = css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True, keep_link_tags=False)
_TEXT_CONFIG = ParserConfig(display_links=True)
_TRAILING_SPACE = re.compile(r"[ \t]+$", re.M)
_BLANK_LINES = re.compile(r"\n{3,}")


class TemplateError(ValueError):
    """A template that cannot be prepared; ``problems`` says where."""

    def __init__(self, problems: list[TemplateProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class RenderError(ValueError):
    """Rendering failed for one recipient (a resource limit, a failing rule, a filter error)."""


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    """One thing wrong with a template, for the editor: which part, where, and for which sample."""

    part: str  # subject, preheader, body, text, rules
    message: str
    line: int | None = None
    column: int | None = None
    sample: str = ""
    severity: str = "error"  # or "warning": worth knowing, does not block saving

    def __str__(self) -> str:
        where = f" (line {self.line}, column {self.column})" if self.line is not None else ""
        sample = f" [{self.sample}]" if self.sample else ""
        return f"{self.part}: {self.message}{where}{sample}"


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    preheader: str
    html: str
    text: str
    # Set when ``html`` was rendered from the link-marked source (``render(..., tracked=True)``):
    # build_mime then replaces the markers (see campaigns.tracking.links).
    marks: MarkedLinks | None = None


# --- document transformations with Liquid protected ------------------------------------------------


def _protect(source: str, *, comments: bool) -> tuple[str, list[str]]:
    """Replace Liquid markup by placeholders: an HTML comment between elements (comments stay in
    place, even in tables) or a word inside a tag (attribute values), when ``comments``."""
    tokens: list[str] = []
    pieces: list[str] = []
    in_tag = False
    position = 0
    for match in _LIQUID.finditer(source):
        static = source[position : match.start()]
        opened, closed = static.rfind("<"), static.rfind(">")
        if opened != closed:
            in_tag = opened > closed
        pieces.append(static)
        index = len(tokens)
        tokens.append(match.group())
        pieces.append(f"<!--xes-liquid-{index}-->" if comments and not in_tag else f"xesliquid{index}x")
        position = match.end()
    pieces.append(source[position:])
    return "".join(pieces), tokens


def _restore(document: str, tokens: list[str]) -> str | None:
    """Put the Liquid markup back; ``None`` when any placeholder was lost, repeated or reordered."""
    seen: list[int] = []

    def put_back(match: re.Match[str]) -> str:
        index = int(match.group(1) or match.group(2))
        seen.append(index)
        return tokens[index] if index < len(tokens) else match.group()

    restored = _PLACEHOLDER.sub(put_back, document)
    if seen != list(range(len(tokens))):
        return None
    return restored


def _compile_mjml(source: str) -> str:
    import mjml

    protected, tokens = _protect(source, comments=False)
    try:
        html = mjml.mjml2html(protected)
    except Exception as exc:  # noqa: BLE001 - the Rust compiler raises its own error types
        raise TemplateError([TemplateProblem("body", _("MJML error: %(error)s") % {"error": exc})]) from exc
    restored = _restore(html, tokens)
    if restored is None:
        raise TemplateError(
            [TemplateProblem("body", _("MJML dropped or moved Liquid markup; keep Liquid inside MJML elements."))]
        )
    return restored


def _inline_css(source: str) -> tuple[str, bool]:
    """The document with CSS inlined, or unchanged (``False``) when inlining would move Liquid."""
    if "<style" not in source.lower():
        return source, True
    protected, tokens = _protect(source, comments=True)
    try:
        inlined = _INLINER.inline(protected)
    except ValueError:
        return source, False
    restored = _restore(inlined, tokens)
    if restored is None:
        return source, False
    return restored, True


def html_to_text(html: str) -> str:
    """A readable text version of an HTML e-mail (links shown as ``[text](url)``)."""
    text = get_text(html, _TEXT_CONFIG)
    text = _TRAILING_SPACE.sub("", text)
    return _BLANK_LINES.sub("\n\n", text).strip() + "\n"


def _text_template_source(html_source: str) -> str | None:
    """The text version as Liquid, generated once from the (Liquid) HTML; ``None`` when the
    conversion would move Liquid markup (then each message's text is generated from its HTML)."""
    protected, tokens = _protect(html_source, comments=False)
    return _restore(html_to_text(protected), tokens)


def _normalise_newlines(value: str) -> str:
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    return value


def _static_lines(source: str) -> str:
    """Lines of a Liquid source without markup: rendered verbatim, so encoded once."""
    return "\n".join(line for line in source.split("\n") if "{{" not in line and "{%" not in line)


# --- prepared template --------------------------------------------------------------------------------


@dataclass
class PreparedTemplate:
    """A template compiled once for many recipients. Thread-compatible: rendering does not mutate it."""

    template_id: int | None
    rules: CompiledRules
    subject: FastTemplate
    preheader: FastTemplate | None
    html: FastTemplate
    text: FastTemplate | None
    html_source: str
    text_source: str
    css_inlined: bool
    warnings: list[TemplateProblem] = field(default_factory=list)
    _skeletons: dict[str, MimeSkeleton] = field(default_factory=dict)
    # The HTML with its links marked for tracking, built on first use: (marks, template) or a
    # (None, None) when there is nothing to mark or the marked source does not parse.
    _tracked: tuple[MarkedLinks | None, FastTemplate | None] | None = None

    def _tracked_html(self) -> tuple[MarkedLinks | None, FastTemplate | None]:
        """Building it twice from two threads gives equal results: no lock needed."""
        if self._tracked is None:
            marks = mark_links(self.html_source)
            template = None
            if marks is not None:
                try:
                    template = FastTemplate(parse_liquid(marks.source, autoescape=True), CONTEXT_NAMES)
                except LiquidProblem:
                    marks = None
            self._tracked = (marks, template)
        return self._tracked

    def render(
        self,
        contact: Mapping[str, Any],
        data: Mapping[str, Any] | None = None,
        message: Mapping[str, Any] | None = None,
        *,
        tracked: bool = False,
    ) -> Rendered:
        """Render for one recipient. ``contact`` is the flat field mapping (see
        :func:`campaigns.rules.contact_fields`), ``data`` the message's merge data, ``message``
        its links (``unsubscribe_url``, ``view_url``). Merge values are HTML-escaped in the HTML
        only; the subject is cleaned of line breaks and control characters. With ``tracked``,
        the HTML comes from the link-marked source, for ``build_mime(..., tracking=...)``."""
        marks, html_template = self._tracked_html() if tracked else (None, None)
        try:
            rule_values = self.rules.evaluate(contact)
        except RuleError as exc:
            raise RenderError(str(exc)) from exc
        message_values = dict(message) if message else {}
        context = {"contact": contact, "rules": rule_values, "data": data or {}, "message": message_values}
        try:
            subject = clean_header_value(self.subject.render(context))
            preheader = " ".join(self.preheader.render(context).split()) if self.preheader else ""
            message_values["preheader"] = preheader
            html = _normalise_newlines((html_template or self.html).render(context))
            if self.text:
                text = _normalise_newlines(self.text.render(context))
            else:
                text = html_to_text(restore_marks(html, marks) if marks is not None else html)
        except LiquidError as exc:
            raise RenderError(liquid_message(exc)) from exc
        return Rendered(subject=subject, preheader=preheader, html=html, text=text, marks=marks)

    def skeleton(self, linesep: str = "\n") -> MimeSkeleton:
        skeleton = self._skeletons.get(linesep)
        if skeleton is None:
            skeleton = MimeSkeleton(
                text_static=_static_lines(self.text_source),
                html_static=_static_lines(self.html_source),
                linesep=linesep,
            )
            self._skeletons[linesep] = skeleton
        return skeleton

    def build_mime(
        self,
        rendered: Rendered,
        *,
        from_header: str | tuple[str, str],
        to: str | tuple[str, str],
        message_id_domain: str,
        headers: Mapping[str, str] | None = None,
        linesep: str = "\n",
        tracking: Tracking | None = None,
    ) -> bytes:
        """The message as bytes: multipart/alternative (text, HTML), UTF-8 quoted-printable.
        ``headers`` adds headers such as ``List-Unsubscribe``; a ``Message-ID`` there replaces the
        generated one. Lines end in ``linesep`` (``"\\r\\n"`` for the SMTP wire form). With
        ``tracking``, the HTML part gets tracked links and an open pixel
        (:func:`campaigns.tracking.links.rewrite_html`)."""
        html = rendered.html
        if rendered.marks is not None:
            html = (
                restore_marks(html, rendered.marks) if tracking is None else apply_marks(html, rendered.marks, tracking)
            )
        elif tracking is not None:
            html = rewrite_html(html, tracking)
        return self.skeleton(linesep).build(
            subject=rendered.subject,
            text=rendered.text,
            html=html,
            from_header=from_header,
            to=to,
            message_id_domain=message_id_domain,
            headers=headers,
        )


def _ensure_rules(rules: CompiledRules | Iterable[Rule] | None) -> CompiledRules:
    if isinstance(rules, CompiledRules):
        return rules
    return compile_rules(list(rules or []))


def _parse_part(part: str, source: str, *, autoescape: bool, problems: list[TemplateProblem]) -> BoundTemplate | None:
    try:
        return parse_liquid(source, autoescape=autoescape)
    except LiquidProblem as exc:
        problems.append(TemplateProblem(part, exc.message, exc.line, exc.column))
        return None


def _html_source(template: Template) -> tuple[str, bool]:
    body = _normalise_newlines(template.body)
    if template.source_format == Template.Format.MJML:
        body = _compile_mjml(body)
    body, inlined = _inline_css(body)
    if template.preheader.strip():
        match = _BODY_OPEN.search(body)
        at = match.end() if match else 0
        body = body[:at] + _PREHEADER + body[at:]
    return body, inlined


def prepare(template: Template, rules: CompiledRules | Iterable[Rule] | None = None) -> PreparedTemplate:
    """Compile a template once for sending; raises :class:`TemplateError` when it cannot be used."""
    try:
        compiled_rules = _ensure_rules(rules)
    except RuleError as exc:
        raise TemplateError([TemplateProblem("rules", str(exc))]) from exc
    problems: list[TemplateProblem] = []
    warnings: list[TemplateProblem] = []
    html_source, inlined = _html_source(template)
    if not inlined:
        warnings.append(
            TemplateProblem(
                "body",
                _(
                    "CSS was not inlined: Liquid markup sits where inlining would move it "
                    "(for example inside a style element)."
                ),
                severity="warning",
            )
        )
    subject = _parse_part("subject", clean_header_value(template.subject), autoescape=False, problems=problems)
    preheader = (
        _parse_part("preheader", template.preheader, autoescape=False, problems=problems)
        if template.preheader.strip()
        else None
    )
    html = _parse_part("body", html_source, autoescape=True, problems=problems)
    text_source = _normalise_newlines(template.text)
    if not text_source.strip():
        text_source = _text_template_source(html_source) or ""
    text = _parse_part("text", text_source, autoescape=False, problems=problems) if text_source else None
    if problems or subject is None or html is None:
        raise TemplateError(problems)
    return PreparedTemplate(
        template_id=template.pk,
        rules=compiled_rules,
        subject=FastTemplate(subject, CONTEXT_NAMES),
        preheader=FastTemplate(preheader, CONTEXT_NAMES) if preheader else None,
        html=FastTemplate(html, CONTEXT_NAMES),
        text=FastTemplate(text, CONTEXT_NAMES) if text else None,
        html_source=html_source,
        text_source=text_source,
        css_inlined=inlined,
        warnings=warnings,
    )


# --- save-time checks ------------------------------------------------------------------------------------


def _analyse(part: str, source: str, template: BoundTemplate, rule_names: set[str]) -> list[TemplateProblem]:
    """Unknown names (only ``contact``, ``rules``, ``data`` and ``message`` exist), unknown rules
    and filters that are not allowed, each with its position in the source as written."""
    from campaigns.rendering.environment import ALLOWED_FILTERS

    problems: list[TemplateProblem] = []

    def position(index: int) -> tuple[int, int]:
        return source.count("\n", 0, index) + 1, index - (source.rfind("\n", 0, index) + 1) + 1

    try:
        analysis = template.analyze(include_partials=False)
    except LiquidError as exc:
        return [TemplateProblem(part, liquid_message(exc))]
    for root, variables in analysis.globals.items():
        for variable in variables:
            line, column = position(variable.span.index)
            if root not in CONTEXT_NAMES:
                hint = _(
                    "Unknown name “%(name)s”: use contact.%(name)s, rules.%(name)s, data.%(name)s or message.%(name)s."
                ) % {"name": root}
                problems.append(TemplateProblem(part, hint, line, column))
            elif root == "rules" and len(variable.segments) > 1:
                name = variable.segments[1]
                if isinstance(name, str) and name not in rule_names:
                    problems.append(
                        TemplateProblem(part, _("There is no rule called “%(name)s”.") % {"name": name}, line, column)
                    )
    for name, spans in analysis.filters.items():
        if name not in ALLOWED_FILTERS:
            for span in spans:
                line, column = position(span.index)
                problems.append(
                    TemplateProblem(part, _("The filter “%(name)s” is not available.") % {"name": name}, line, column)
                )
    return problems


def check_template(
    template: Template,
    rules: CompiledRules | Iterable[Rule] | None,
    sample_contacts: Iterable[Contact | Mapping[str, Any]] = (),
) -> list[TemplateProblem]:
    """Everything wrong with a template, for save-time validation and previews: Liquid syntax errors
    and unknown names (with line and column in the part as written), rule errors, MJML errors,
    and errors rendering it for each sample contact. Empty when the template can be sent."""
    try:
        compiled_rules = _ensure_rules(rules)
    except RuleError as exc:
        return [TemplateProblem("rules", str(exc))]
    problems: list[TemplateProblem] = []
    parts = [("subject", template.subject, False), ("preheader", template.preheader, False)]
    parts += [("body", _normalise_newlines(template.body), True), ("text", _normalise_newlines(template.text), False)]
    for part, source, autoescape in parts:
        if not source.strip():
            continue
        parsed = _parse_part(part, source, autoescape=autoescape, problems=problems)
        if parsed is not None:
            problems.extend(_analyse(part, source, parsed, compiled_rules.names))
    if problems:
        return problems
    try:
        prepared = prepare(template, compiled_rules)
    except TemplateError as exc:
        return exc.problems
    problems.extend(prepared.warnings)
    for sample in sample_contacts:
        fields = contact_fields(sample) if isinstance(sample, Contact) else dict(sample)
        label = str(fields.get("email", ""))
        try:
            prepared.render(fields, {}, {"unsubscribe_url": "https://example.invalid/u/sample", "view_url": ""})
        except RenderError as exc:
            cause = exc.__cause__
            line = column = None
            if isinstance(cause, LiquidError):
                line, column = liquid_error_position(cause, prepared.html_source)
            problems.append(TemplateProblem("body", str(exc), line, column, sample=label))
    return problems
