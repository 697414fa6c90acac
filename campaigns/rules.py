"""Business rules: named conditions and computed values, defined once per organisation.

A CONDITION rule is written in a small expression language of our own (never ``eval``)::

    points > 100
    country == "DE" and not unsubscribed
    country in ["DE", "AT"] or email ends_with "@example.de"
    is_blank(phone) or renewal_date < date("2027-01-01")
    vip and not (plan == "Free")

Names on the left of a comparison are contact fields (``email``, ``first_name``, ``last_name`` and
the organisation's custom field keys); a bare name is another condition rule or, failing that, a
yes/no field that must be true. Literals are numbers, "strings", ``true``/``false`` and
``date("YYYY-MM-DD")``.

The same condition evaluates in Python (:func:`evaluate`, at send time) and in SQL
(:func:`condition_to_q`, for segments), with identical two-valued semantics: a comparison with a
missing field or a value of another type is false, so ``not`` of it is true in both worlds.

A VALUE rule is a Liquid template (``{% if country == "DE" %}Hallo{% else %}Hello{% endif %}``)
rendered with the contact's fields as top-level names and the rules computed before it (by name and
as ``rules.<name>``), under the same resource limits as content.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db.models import BooleanField, Case, DecimalField, F, Func, Q, TextField, Value, When
from django.db.models.expressions import Expression
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast, Collate, Trim
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    IContains,
    IEndsWith,
    IStartsWith,
    LessThan,
    LessThanOrEqual,
)
from django.utils.translation import gettext as _

from campaigns.models import CustomField, Rule

if TYPE_CHECKING:
    from liquid import BoundTemplate

    from accounts.models import Organisation

__all__ = [
    "COLUMN_FIELDS",
    "CompiledRules",
    "Condition",
    "RuleError",
    "compile_rules",
    "condition_to_q",
    "contact_fields",
    "evaluate",
    "parse_condition",
    "validate_rule",
]

# Contact attributes stored as columns; every other field lives in ``Contact.fields`` (JSON).
COLUMN_FIELDS: tuple[str, ...] = ("email", "first_name", "last_name")

# A condition nested deeper than this is refused: it is certainly a mistake and would exhaust the
# Python stack in the recursive evaluator.
MAX_DEPTH = 50
MAX_EXPRESSION_LENGTH = 5000


class RuleError(ValueError):
    """A rule that cannot be parsed, refers to something unknown or depends on itself."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None, rule: str = "") -> None:
        self.message = message
        self.line = line
        self.column = column
        self.rule = rule
        super().__init__(str(self))

    def __str__(self) -> str:
        prefix = f"{self.rule}: " if self.rule else ""
        if self.line is None:
            return f"{prefix}{self.message}"
        return prefix + _("%(message)s (line %(line)s, column %(column)s)") % {
            "message": self.message,
            "line": self.line,
            "column": self.column,
        }


# --- syntax tree ------------------------------------------------------------------------------------

Literal = bool | int | Decimal | str | datetime.date


@dataclass(frozen=True, slots=True)
class Name:
    """A bare name: a condition rule if one has that name, else a yes/no field that must be true."""

    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Compare:
    """``field <op> literal``; ``in`` and ``not_in`` take a tuple of literals."""

    field: str
    op: str
    value: Literal | tuple[Literal, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Blank:
    """``is_blank(field)`` (missing, null or only whitespace) or ``is_present(field)`` (negated)."""

    field: str
    negate: bool
    pos: int


@dataclass(frozen=True, slots=True)
class Const:
    value: bool
    pos: int


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition
    pos: int


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Condition, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Condition, ...]
    pos: int


Condition = Name | Compare | Blank | Const | Not | And | Or


# --- parser -----------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|>=|<=|>|<|\(|\)|\[|\]|,)
    """,
    re.VERBOSE,
)
_COMPARISON_WORDS = {"contains", "starts_with", "ends_with", "in"}
_RESERVED = {"and", "or", "not", "true", "false", "date", "is_blank", "is_present"} | _COMPARISON_WORDS
_ORDERING = {">", ">=", "<", "<="}
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


def line_col(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of offset ``pos`` in ``text``."""
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, column


@dataclass(slots=True)
class _Token:
    kind: str  # number, string, name, op, end
    value: str
    pos: int


class _Parser:
    """Recursive descent: ``or`` binds loosest, then ``and``, then ``not``, then comparisons."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._tokenize(text)
        self.index = 0
        self.depth = 0

    def error(self, message: str, pos: int) -> RuleError:
        line, column = line_col(self.text, pos)
        return RuleError(message, line, column)

    def _tokenize(self, text: str) -> list[_Token]:
        tokens: list[_Token] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match:
                raise self.error(_("Unexpected character “%(char)s”.") % {"char": text[pos]}, pos)
            kind = match.lastgroup or ""
            if kind != "ws":
                tokens.append(_Token(kind, match.group(), pos))
            pos = match.end()
        tokens.append(_Token("end", "", len(text)))
        return tokens

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def at(self, kind: str, value: str | None = None) -> bool:
        token = self.current
        return token.kind == kind and (value is None or token.value == value)

    def expect_op(self, value: str) -> _Token:
        if not self.at("op", value):
            raise self.error(_("Expected “%(expected)s” here.") % {"expected": value}, self.current.pos)
        return self.advance()

    def parse(self) -> Condition:
        if self.current.kind == "end":
            raise self.error(_("The condition is empty."), 0)
        result = self.parse_or()
        if self.current.kind != "end":
            raise self.error(
                _("Unexpected “%(token)s”: expected “and”, “or” or the end.") % {"token": self.current.value},
                self.current.pos,
            )
        return result

    def parse_or(self) -> Condition:
        start = self.current.pos
        items = [self.parse_and()]
        while self.at("name", "or"):
            self.advance()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items), start)

    def parse_and(self) -> Condition:
        start = self.current.pos
        items = [self.parse_not()]
        while self.at("name", "and"):
            self.advance()
            items.append(self.parse_not())
        return items[0] if len(items) == 1 else And(tuple(items), start)

    def parse_not(self) -> Condition:
        if self.at("name", "not"):
            token = self.advance()
            return Not(self.nested(self.parse_not, token.pos), token.pos)
        return self.parse_primary()

    def nested(self, parse: Any, pos: int) -> Condition:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(_("The condition is nested too deeply."), pos)
        try:
            result: Condition = parse()
        finally:
            self.depth -= 1
        return result

    def parse_primary(self) -> Condition:
        token = self.current
        if token.kind == "op" and token.value == "(":
            self.advance()
            inner = self.nested(self.parse_or, token.pos)
            self.expect_op(")")
            return inner
        if token.kind == "name":
            if token.value in ("true", "false"):
                self.advance()
                return Const(token.value == "true", token.pos)
            if token.value in ("is_blank", "is_present"):
                self.advance()
                self.expect_op("(")
                name = self.expect_field()
                self.expect_op(")")
                return Blank(name.value, token.value == "is_present", token.pos)
            if token.value in _RESERVED:
                raise self.error(_("“%(word)s” cannot start a condition.") % {"word": token.value}, token.pos)
            self.advance()
            return self.parse_comparison_rest(token)
        if token.kind == "end":
            raise self.error(_("The condition ends too early."), token.pos)
        raise self.error(
            _("Expected a field, a rule or “(”, found “%(token)s”. Put the field on the left of a comparison.")
            % {"token": token.value},
            token.pos,
        )

    def expect_field(self) -> _Token:
        token = self.current
        if token.kind != "name" or token.value in _RESERVED:
            raise self.error(_("Expected a field name here."), token.pos)
        return self.advance()

    def parse_comparison_rest(self, name: _Token) -> Condition:
        token = self.current
        if token.kind == "op" and token.value in ("==", "!=", ">", ">=", "<", "<="):
            self.advance()
            value = self.parse_literal()
            if token.value in _ORDERING and isinstance(value, bool):
                raise self.error(_("Yes/no values cannot be compared with “%(op)s”.") % {"op": token.value}, token.pos)
            return Compare(name.value, token.value, value, name.pos)
        if token.kind == "name" and token.value == "not" and self.tokens[self.index + 1].value == "in":
            self.advance()
            self.advance()
            return Compare(name.value, "not_in", self.parse_list(), name.pos)
        if token.kind == "name" and token.value in _COMPARISON_WORDS:
            self.advance()
            if token.value == "in":
                return Compare(name.value, "in", self.parse_list(), name.pos)
            value = self.parse_literal()
            if not isinstance(value, str):
                raise self.error(_("“%(op)s” needs a text in quotes.") % {"op": token.value}, token.pos)
            return Compare(name.value, token.value, value, name.pos)
        return Name(name.value, name.pos)

    def parse_list(self) -> tuple[Literal, ...]:
        self.expect_op("[")
        items: list[Literal] = []
        while not self.at("op", "]"):
            items.append(self.parse_literal())
            if not self.at("op", ","):
                break
            self.advance()
        self.expect_op("]")
        if not items:
            raise self.error(_("The list is empty."), self.current.pos)
        return tuple(items)

    def parse_literal(self) -> Literal:
        token = self.current
        if token.kind == "number":
            self.advance()
            return Decimal(token.value) if "." in token.value else int(token.value)
        if token.kind == "string":
            self.advance()
            return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), token.value[1:-1])
        if token.kind == "name" and token.value in ("true", "false"):
            self.advance()
            return token.value == "true"
        if token.kind == "name" and token.value == "date":
            self.advance()
            self.expect_op("(")
            arg = self.current
            if arg.kind != "string":
                raise self.error(_('date() needs a date in quotes, like date("2027-01-31").'), arg.pos)
            self.advance()
            self.expect_op(")")
            try:
                return datetime.date.fromisoformat(arg.value[1:-1])
            except ValueError:
                raise self.error(_("“%(value)s” is not a date (YYYY-MM-DD).") % {"value": arg.value}, arg.pos) from None
        raise self.error(_("Expected a number, a text in quotes, true, false or date(…) here."), token.pos)


def parse_condition(text: str) -> Condition:
    """Parse a condition; raises :class:`RuleError` with the line and column of the first problem."""
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise RuleError(_("The condition is too long (at most %(max)s characters).") % {"max": MAX_EXPRESSION_LENGTH})
    return _Parser(text).parse()


# --- evaluation in Python ---------------------------------------------------------------------------


def contact_fields(contact: Any) -> dict[str, Any]:
    """The flat field mapping of a :class:`~campaigns.models.Contact` that rules and templates read:
    the custom fields overlaid by the column fields (columns win a clash of names)."""
    values: dict[str, Any] = dict(contact.fields or {})
    for name in COLUMN_FIELDS:
        values[name] = getattr(contact, name)
    return values


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _equals(value: object, literal: Literal) -> bool:
    """Typed equality, as jsonb compares: ``1 == true`` and ``"5" == 5`` are false."""
    if isinstance(literal, bool):
        return value is literal
    if isinstance(literal, datetime.date):
        return isinstance(value, str) and value == literal.isoformat()
    if isinstance(literal, str):
        return isinstance(value, str) and value == literal
    return _is_number(value) and value == literal


def _ordered(value: object, op: str, literal: Literal) -> bool:
    """Numbers compare with numbers; texts and dates (ISO strings) compare by code point, like the
    "C" collation in SQL. Anything else is false."""
    right: Any
    if _is_number(literal):
        if not _is_number(value):
            return False
        left: Any = value
        right = literal
    else:
        if not isinstance(value, str):
            return False
        left = value
        right = literal.isoformat() if isinstance(literal, datetime.date) else literal
    if op == ">":
        return bool(left > right)
    if op == ">=":
        return bool(left >= right)
    if op == "<":
        return bool(left < right)
    return bool(left <= right)


def evaluate(condition: Condition, contact_fields: Mapping[str, Any], rules: Mapping[str, Any]) -> bool:
    """Evaluate a parsed condition for one contact. ``rules`` maps rule names to parsed conditions
    (or to already computed booleans); a rule that refers to itself raises :class:`RuleError`."""
    return _evaluate(condition, contact_fields, rules, ())


def _evaluate(
    condition: Condition, values: Mapping[str, Any], rules: Mapping[str, Any], active: tuple[str, ...]
) -> bool:
    if isinstance(condition, Compare):
        value = values.get(condition.field)
        op = condition.op
        literal = condition.value
        if op == "==":
            return _equals(value, literal)  # type: ignore[arg-type]
        if op == "!=":
            return not _equals(value, literal)  # type: ignore[arg-type]
        if op in _ORDERING:
            return _ordered(value, op, literal)  # type: ignore[arg-type]
        if op == "in":
            return any(_equals(value, item) for item in literal)  # type: ignore[union-attr]
        if op == "not_in":
            return not any(_equals(value, item) for item in literal)  # type: ignore[union-attr]
        if not isinstance(value, str):
            return False
        # Case-insensitive like SQL's UPPER(..) LIKE UPPER(..).
        haystack, needle = value.upper(), str(literal).upper()
        if op == "contains":
            return needle in haystack
        if op == "starts_with":
            return haystack.startswith(needle)
        return haystack.endswith(needle)
    if isinstance(condition, And):
        return all(_evaluate(item, values, rules, active) for item in condition.items)
    if isinstance(condition, Or):
        return any(_evaluate(item, values, rules, active) for item in condition.items)
    if isinstance(condition, Not):
        return not _evaluate(condition.item, values, rules, active)
    if isinstance(condition, Name):
        if condition.name in rules:
            target = rules[condition.name]
            if isinstance(target, bool):
                return target
            if condition.name in active:
                raise RuleError(_("The rule “%(name)s” depends on itself.") % {"name": condition.name})
            return _evaluate(_as_condition(condition.name, target), values, rules, (*active, condition.name))
        return values.get(condition.name) is True
    if isinstance(condition, Blank):
        value = values.get(condition.field)
        blank = value is None or (isinstance(value, str) and not value.strip())
        return blank != condition.negate
    return condition.value


def _as_condition(name: str, target: Any) -> Condition:
    """Rules may be given as parsed conditions, as ``Rule`` rows or as condition text."""
    if isinstance(target, Rule):
        if target.kind != Rule.Kind.CONDITION:
            raise RuleError(_("“%(name)s” is a computed value, not a condition.") % {"name": name})
        target = target.expression
    if isinstance(target, str):
        try:
            return parse_condition(target)
        except RuleError as exc:
            exc.rule = name
            raise
    if isinstance(target, (Name, Compare, Blank, Const, Not, And, Or)):
        return target
    raise RuleError(_("“%(name)s” is a computed value, not a condition.") % {"name": name})


# --- translation to SQL -----------------------------------------------------------------------------

_TRUE = Value(True)
_FALSE = Value(False)


def _flag(condition: Any) -> Case:
    """A two-valued SQL boolean: NULL (missing field, other type) becomes false, never unknown, so
    that ``NOT`` agrees with :func:`evaluate`."""
    return Case(When(condition, then=_TRUE), default=_FALSE, output_field=BooleanField())


def _json_typeof(key: str) -> Func:
    return Func(KeyTransform(key, "fields"), function="jsonb_typeof", output_field=TextField())


def _typed_json(key: str, json_type: str, output: Any) -> Case:
    """The field's value cast to ``output`` when its JSON type is ``json_type``, else NULL. CASE
    guarantees the type test runs before the cast, so bad data never breaks the query."""
    text = KeyTextTransform(key, "fields")
    value: Expression = text if isinstance(output, TextField) else Cast(text, output)
    return Case(When(Exact(_json_typeof(key), json_type), then=value), default=Value(None), output_field=output)


def _operand(field_name: str, literal: Literal) -> tuple[Expression, Any]:
    """The SQL side of ``field`` for a comparison with ``literal`` and the literal as SQL value."""
    if field_name in COLUMN_FIELDS:
        column: Any = F(field_name)
        if isinstance(literal, (bool, int, Decimal)):
            return Value(None, output_field=TextField()), literal  # a column is never a number
        return column, literal.isoformat() if isinstance(literal, datetime.date) else literal
    if isinstance(literal, bool):
        return _typed_json(field_name, "boolean", BooleanField()), literal
    if _is_number(literal):
        return _typed_json(field_name, "number", DecimalField()), Decimal(str(literal))
    text = _typed_json(field_name, "string", TextField())
    return text, literal.isoformat() if isinstance(literal, datetime.date) else literal


def _compare_q(condition: Compare) -> Q:
    op = condition.op
    if op in ("in", "not_in"):
        items = [_compare_q(Compare(condition.field, "==", item, condition.pos)) for item in condition.value]  # type: ignore[union-attr]
        any_q = items[0]
        for item_q in items[1:]:
            any_q |= item_q
        return ~any_q if op == "not_in" else any_q
    literal: Literal = condition.value  # type: ignore[assignment]
    left, right = _operand(condition.field, literal)
    if op == "==":
        return Q(_flag(Exact(left, right)))
    if op == "!=":
        return ~Q(_flag(Exact(left, right)))
    if op in _ORDERING:
        lookup = {">": GreaterThan, ">=": GreaterThanOrEqual, "<": LessThan, "<=": LessThanOrEqual}[op]
        if isinstance(right, str):
            # Code point order, as in Python: ISO dates and texts compare the same everywhere.
            return Q(_flag(lookup(Collate(left, "C"), right)))
        return Q(_flag(lookup(left, right)))
    text_lookup = {"contains": IContains, "starts_with": IStartsWith, "ends_with": IEndsWith}[op]
    return Q(_flag(text_lookup(left, right)))


def condition_to_q(condition: Condition, rules: Mapping[str, Any]) -> Q:
    """A ``Q`` over :class:`~campaigns.models.Contact` that selects exactly the contacts for which
    :func:`evaluate` is true. ``rules`` maps rule names to parsed conditions, condition text or
    ``Rule`` rows (value rules cannot be used in SQL)."""
    return _to_q(condition, rules, ())


def _to_q(condition: Condition, rules: Mapping[str, Any], active: tuple[str, ...]) -> Q:
    if isinstance(condition, Compare):
        return _compare_q(condition)
    if isinstance(condition, (And, Or)):
        parts = [_to_q(item, rules, active) for item in condition.items]
        combined = parts[0]
        for part in parts[1:]:
            combined = (combined & part) if isinstance(condition, And) else (combined | part)
        return combined
    if isinstance(condition, Not):
        return ~_to_q(condition.item, rules, active)
    if isinstance(condition, Name):
        if condition.name in rules:
            if condition.name in active:
                raise RuleError(_("The rule “%(name)s” depends on itself.") % {"name": condition.name})
            target = _as_condition(condition.name, rules[condition.name])
            return _to_q(target, rules, (*active, condition.name))
        return _compare_q(Compare(condition.name, "==", True, condition.pos))
    if isinstance(condition, Blank):
        if condition.field in COLUMN_FIELDS:
            blank = _flag(Exact(Trim(F(condition.field)), ""))
        else:
            text = _typed_json(condition.field, "string", TextField())
            blank = Case(
                When(
                    Q(**{"fields__has_key": condition.field}) & ~Q(**{f"fields__{condition.field}": None}),
                    then=_flag(Exact(Trim(text), "")),
                ),
                default=_TRUE,
                output_field=BooleanField(),
            )
        return ~Q(blank) if condition.negate else Q(blank)
    return Q(pk__isnull=False) if condition.value else Q(pk__in=[])


# --- references, validation and compilation ----------------------------------------------------------


def _condition_refs(condition: Condition) -> Iterable[tuple[str, int, bool]]:
    """(name, position, is_bare_name) of every name the condition uses."""
    if isinstance(condition, (Compare, Blank)):
        yield condition.field, condition.pos, False
    elif isinstance(condition, Name):
        yield condition.name, condition.pos, True
    elif isinstance(condition, Not):
        yield from _condition_refs(condition.item)
    elif isinstance(condition, (And, Or)):
        for item in condition.items:
            yield from _condition_refs(item)


def _compile_value(name: str, expression: str) -> BoundTemplate:
    from campaigns.rendering.environment import LiquidProblem, parse_liquid

    try:
        return parse_liquid(expression, autoescape=False)
    except LiquidProblem as exc:
        raise RuleError(exc.message, exc.line, exc.column, rule=name) from exc


def _value_refs(template: BoundTemplate, source: str) -> list[tuple[str, int, int]]:
    """Rule names a value rule reads (``vip`` or ``rules.vip``), with line and column."""
    refs: list[tuple[str, int, int]] = []
    for root, variables in template.analyze(include_partials=False).globals.items():
        for variable in variables:
            segments = [s for s in variable.segments if isinstance(s, str)]
            line, column = line_col(source, variable.span.index)
            if root in ("rules", "contact"):
                if len(segments) > 1:
                    refs.append((f"{root}.{segments[1]}", line, column))
            else:
                refs.append((root, line, column))
    return refs


@dataclass
class _Compiled:
    name: str
    kind: str
    condition: Condition | None = None
    template: BoundTemplate | None = None
    source: str = ""
    deps: set[str] = field(default_factory=set)


def _order(compiled: dict[str, _Compiled]) -> list[str]:
    """Dependency order (dependencies first); raises on a cycle, naming it."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*path[path.index(name) :], name]
            raise RuleError(
                _("These rules depend on each other in a circle: %(cycle)s.") % {"cycle": " → ".join(cycle)}
            )
        state[name] = 1
        for dep in sorted(compiled[name].deps):
            visit(dep, [*path, name])
        state[name] = 2
        order.append(name)

    for name in sorted(compiled):
        visit(name, [])
    return order


class CompiledRules:
    """All rules of an organisation, parsed once, evaluated per contact in dependency order into
    ``{"vip": True, "greeting": "Hallo"}`` (conditions as bool, values as str)."""

    def __init__(self, compiled: dict[str, _Compiled], order: list[str]) -> None:
        self._compiled = compiled
        self.order = order
        self.kinds = {name: item.kind for name, item in compiled.items()}
        self._steps = [(name, compiled[name]) for name in order]

    @property
    def names(self) -> set[str]:
        return set(self._compiled)

    def evaluate(self, fields: Mapping[str, Any]) -> dict[str, bool | str]:
        """The value of every rule for one contact's flat fields (see :func:`contact_fields`)."""
        results: dict[str, bool | str] = {}
        for name, item in self._steps:
            if item.condition is not None:
                results[name] = _evaluate(item.condition, fields, results, ())
            else:
                assert item.template is not None
                namespace = {**fields, **results, "contact": fields, "rules": results}
                try:
                    results[name] = item.template.render(namespace).strip()
                except Exception as exc:  # noqa: BLE001 - any template failure is this rule's error
                    raise RuleError(str(exc).split("\n", 1)[0], rule=name) from exc
        return results


def compile_rules(rules: Iterable[Rule]) -> CompiledRules:
    """Parse all rules once and order them by their dependencies (raises :class:`RuleError`)."""
    compiled: dict[str, _Compiled] = {}
    for rule in rules:
        if rule.kind == Rule.Kind.CONDITION:
            condition = _as_condition(rule.name, rule.expression)
            compiled[rule.name] = _Compiled(rule.name, rule.kind, condition=condition)
        else:
            compiled[rule.name] = _Compiled(
                rule.name, rule.kind, template=_compile_value(rule.name, rule.expression), source=rule.expression
            )
    for item in compiled.values():
        if item.condition is not None:
            for name, _pos, bare in _condition_refs(item.condition):
                if bare and name in compiled:
                    if compiled[name].kind != Rule.Kind.CONDITION:
                        raise RuleError(
                            _("“%(name)s” is a computed value, not a condition.") % {"name": name}, rule=item.name
                        )
                    item.deps.add(name)
        elif item.template is not None:
            for ref, _line, _col in _value_refs(item.template, item.source):
                target = ref.removeprefix("rules.")
                if (ref.startswith("rules.") or "." not in ref) and target in compiled:
                    item.deps.add(target)
    return CompiledRules(compiled, _order(compiled))


def validate_rule(rule_or_text: Rule | str, kind: str, organisation: Organisation) -> None:
    """Save-time check of one rule against the organisation's fields and other rules: syntax (with
    line and column), unknown fields or rules, type mismatches with typed fields, and cycles."""
    name = rule_or_text.name if isinstance(rule_or_text, Rule) else ""
    text = rule_or_text.expression if isinstance(rule_or_text, Rule) else rule_or_text
    custom = {f.key: f for f in CustomField.objects.filter(organisation=organisation)}
    known_fields = set(COLUMN_FIELDS) | set(custom)
    others = {r.name: r for r in Rule.objects.filter(organisation=organisation) if r.name != name or not name}
    if isinstance(rule_or_text, Rule) and rule_or_text.pk:
        others = {n: r for n, r in others.items() if r.pk != rule_or_text.pk}
    if name and name in known_fields:
        raise RuleError(_("A field is already called “%(name)s”; choose another name for the rule.") % {"name": name})

    if kind == Rule.Kind.CONDITION:
        condition = parse_condition(text)
        for ref, pos, bare in _condition_refs(condition):
            line, column = line_col(text, pos)
            if bare and ref in others:
                if others[ref].kind != Rule.Kind.CONDITION:
                    raise RuleError(_("“%(name)s” is a computed value, not a condition.") % {"name": ref}, line, column)
                continue
            if ref not in known_fields:
                raise RuleError(_("There is no field or rule called “%(name)s”.") % {"name": ref}, line, column)
        _check_types(condition, custom, text)
    else:
        template = _compile_value(name, text)
        for ref, line, column in _value_refs(template, text):
            root, _dot, rest = ref.partition(".")
            if root == "rules" and rest not in others:
                raise RuleError(_("There is no rule called “%(name)s”.") % {"name": rest}, line, column)
            if root == "contact" and rest not in known_fields:
                raise RuleError(_("There is no field called “%(name)s”.") % {"name": rest}, line, column)
            if not rest and ref not in known_fields and ref not in others:
                raise RuleError(_("There is no field or rule called “%(name)s”.") % {"name": ref}, line, column)

    if name:
        candidate = Rule(name=name, kind=kind, expression=text)
        compile_rules([*others.values(), candidate])


def _check_types(condition: Condition, custom: Mapping[str, CustomField], text: str) -> None:
    """Comparisons that can never be true for a typed field are mistakes worth reporting."""
    expected: dict[str, tuple[type, ...]] = {
        CustomField.Type.NUMBER: (int, Decimal),
        CustomField.Type.BOOLEAN: (bool,),
        CustomField.Type.DATE: (datetime.date, str),
        CustomField.Type.TEXT: (str,),
        CustomField.Type.CHOICE: (str,),
    }
    for node in _walk(condition):
        if not isinstance(node, Compare) or node.field not in custom:
            continue
        custom_field = custom[node.field]
        literals = node.value if isinstance(node.value, tuple) else (node.value,)
        for literal in literals:
            allowed = expected.get(custom_field.type, (object,))
            ok = isinstance(literal, allowed) and not (bool not in allowed and isinstance(literal, bool))
            if custom_field.type == CustomField.Type.CHOICE and ok and node.op in ("==", "!=", "in", "not_in"):
                ok = not custom_field.choices or literal in custom_field.choices
            if not ok:
                line, column = line_col(text, node.pos)
                raise RuleError(
                    _("“%(value)s” does not fit the field “%(field)s” (%(type)s).")
                    % {"value": literal, "field": node.field, "type": custom_field.get_type_display()},
                    line,
                    column,
                )


def _walk(condition: Condition) -> Iterable[Condition]:
    yield condition
    if isinstance(condition, Not):
        yield from _walk(condition.item)
    elif isinstance(condition, (And, Or)):
        for item in condition.items:
            yield from _walk(item)
