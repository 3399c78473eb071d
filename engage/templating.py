"""Filling in email templates with dynamic values, safely (SPEC S29).

A template is written by a sales manager and rendered for each recipient. Writers use Jinja
syntax over a small set of plain values::

    Hello {{ recipient.first_name | default("there") }},
    your order {{ order_number }} for {{ regarding.name }} has shipped.

Rendering runs in Jinja's immutable sandbox with every default global removed, and the values
offered are plain dicts, strings and numbers (see :func:`values_for`), never ORM objects, so a
template has nothing to reach but those values. Anything that tries to reach further (Python
internals, the Flask config, the template's own machinery) is refused with
:class:`TemplateRefused`, whose message can be shown to the writer as is.

A value that is missing renders as empty and is reported in :attr:`Rendered.missing`, unless
the template gives it a default with the ``default`` filter. None of this needs Flask.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError, Undefined, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import missing as _MISSING_OBJECT

from .records import Record

#: The longest template source accepted, in bytes of UTF-8.
MAX_TEMPLATE_BYTES = 100 * 1024
#: The longest text a template may produce, in characters; also caps ``"x" * n``.
MAX_OUTPUT_CHARS = 1_000_000
#: The largest result of ``a ** b`` a template may compute, in bits.
MAX_POWER_BITS = 4096

#: Names a template may not use. The first group are Jinja's default globals, all removed from
#: the environment; they are refused by name (rather than left to render as missing values) so
#: the writer learns at once they are not available. ``range`` is among them: an email has no
#: use for counting loops, and without it the only things a template can iterate over are the
#: values offered and literal lists, both bounded by the input. The second group are names a
#: writer may know from Flask templates; none is offered, and refusing them makes that plain.
#: ``self`` is Jinja's reference to the running template, which leads to its context.
RESERVED_NAMES = frozenset(
    {"range", "lipsum", "cycler", "joiner", "namespace", "dict"}
    | {"self", "config", "request", "session", "g", "url_for", "get_flashed_messages"}
    | {"current_app", "current_user"}
)


class TemplateRefused(Exception):
    """The template tries something a template may not do; ``str(exc)`` is for the writer."""


class TemplateBroken(Exception):
    """The template cannot be rendered: a syntax error, or an error while filling it in.

    :param line: the 1-based line of the problem, when known.
    """

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered template: the text, and the names of the values that were missing.

    Missing names are dotted paths in the order first met (``"recipient.first_name"``).
    """

    text: str
    missing: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SyntaxProblem:
    """Why a template cannot be saved, and on which 1-based line."""

    line: int
    message: str


@dataclass(frozen=True, slots=True)
class TemplateField:
    """A dynamic value a writer can insert from the field picker.

    :param name: the dotted name used in the template (``"recipient.first_name"``).
    :param label: what the picker shows.
    :param example: a sample value for previews and the picker.
    """

    name: str
    label: str
    example: str

    @property
    def snippet(self) -> str:
        """The text the picker inserts into a template."""
        return "{{ " + self.name + " }}"


def _n(message: str) -> str:
    """Mark ``message`` for translation without translating it here (no app is needed to import
    this module); the field picker translates the label when it shows it."""
    return message


#: Every value :func:`values_for` can offer, in the order the field picker lists them.
#: ``order_number`` is an example of a value the caller supplies through ``extra``.
FIELDS: tuple[TemplateField, ...] = (
    TemplateField("recipient.first_name", _n("Recipient's first name"), "Ada"),
    TemplateField("recipient.name", _n("Recipient's name"), "Ada Lovelace"),
    TemplateField("recipient.email", _n("Recipient's email address"), "ada@example.com"),
    TemplateField("recipient.city", _n("Recipient's city"), "London"),
    TemplateField("recipient.country", _n("Recipient's country"), "GB"),
    TemplateField("recipient.type_label", _n("Recipient's record type"), "Contact"),
    TemplateField("regarding.name", _n("Regarding record's name"), "Analytical Engine upgrade"),
    TemplateField("regarding.type_label", _n("Regarding record's type"), "Opportunity"),
    TemplateField("order_number", _n("Order number"), "10042"),
)


def values_for(
    recipient: Record | None, regarding: Record | None, extra: Mapping[str, str] = {}
) -> dict[str, Any]:
    """The plain values offered to a template for one recipient and regarding record.

    Empty fields are left out rather than offered as ``""``, so that they count as missing:
    the template's ``default`` applies and the preview reports them. A ``None`` record is left
    out entirely, which makes every one of its fields missing.

    :param recipient: the record the message is sent to, if known.
    :param regarding: the record the message is about, if any.
    :param extra: further top-level values, such as ``{"order_number": "10042"}``.
    :raises ValueError: when an ``extra`` name is not a plain identifier, starts with ``_``
        or would hide ``recipient`` or ``regarding``.
    """
    values: dict[str, Any] = {}
    if recipient is not None:
        address = recipient.address
        values["recipient"] = _without_empty(
            first_name=recipient.first_name,
            name=recipient.name,
            email=recipient.email,
            city=address.city if address else None,
            country=address.country if address else None,
            type_label=recipient.label,
        )
    if regarding is not None:
        values["regarding"] = _without_empty(name=regarding.name, type_label=regarding.label)
    for name, value in extra.items():
        if not name.isidentifier() or name.startswith("_") or name in RESERVED_NAMES:
            raise ValueError(f"not a usable template value name: {name!r}")
        if name in ("recipient", "regarding"):
            raise ValueError(f"{name!r} is set from the records, not from extra values")
        if value not in (None, ""):
            values[name] = value
    return values


def _without_empty(**fields: object) -> dict[str, object]:
    return {name: value for name, value in fields.items() if value not in (None, "")}


def check_syntax(source: str) -> list[SyntaxProblem]:
    """The problems that keep ``source`` from being saved; empty when it is fine.

    Parses without rendering. Reports Jinja syntax errors and constructs the sandbox would
    refuse (such as ``__class__`` or ``config``), each with its 1-based line.
    """
    try:
        _parse(source)
    except TemplateBroken as exc:
        return [SyntaxProblem(exc.line or 1, str(exc))]
    except _Refusal as exc:
        return [SyntaxProblem(exc.line, str(exc))]
    return []


def render_template_text(source: str, values: Mapping[str, object], *, html: bool) -> Rendered:
    """Fill in a template with ``values`` (as built by :func:`values_for`).

    The HTML of a body (``html=True``) must still be passed through
    :func:`engage.content.clean_html` by the caller, like any other body: values are escaped
    here, but the template's own markup is the writer's and is cleaned there.

    :param source: the template, in Jinja syntax.
    :param values: plain data only: mappings, sequences, strings, numbers.
    :param html: ``True`` for a body, whose values are HTML-escaped; ``False`` for a subject,
        rendered as plain text.
    :raises TemplateRefused: when the template reaches for anything but the values, or is too
        large, or would produce too much.
    :raises TemplateBroken: on a syntax error or an error while rendering.
    """
    try:
        tree = _parse(source)
    except _Refusal as exc:
        raise TemplateRefused(f"Line {exc.line}: {exc}") from None
    environment = _HTML_ENVIRONMENT if html else _TEXT_ENVIRONMENT
    state = _RenderState(values)
    token = _current_render.set(state)
    try:
        template = environment.from_string(tree)
        parts: list[str] = []
        length = 0
        for part in template.generate(**values):
            length += len(part)
            if length > MAX_OUTPUT_CHARS:
                raise SecurityError("the template produces too much text")
            parts.append(part)
    except SecurityError as exc:
        raise TemplateRefused(f"This template is not allowed: {exc}.") from None
    except TemplateSyntaxError as exc:
        raise TemplateBroken(exc.message or str(exc), line=exc.lineno) from None
    except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
        raise TemplateBroken(f"The template could not be filled in: {exc}") from None
    finally:
        _current_render.reset(token)
    return Rendered("".join(parts), tuple(dict.fromkeys(state.missing)))


class _Refusal(Exception):
    """A construct found while checking the parsed template, before anything runs."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def _parse(source: str) -> nodes.Template:
    """Parse ``source`` and refuse what can be refused without running it."""
    if len(source.encode("utf-8")) > MAX_TEMPLATE_BYTES:
        raise _Refusal(f"the template is longer than {MAX_TEMPLATE_BYTES // 1024} KB", 1)
    try:
        tree = _TEXT_ENVIRONMENT.parse(source)
    except TemplateSyntaxError as exc:
        line = _syntax_error_line(source, exc)
        raise TemplateBroken(exc.message or str(exc), line=line) from None
    for node in tree.find_all(nodes.Node):
        _refuse_node(node)
    return tree


#: Tags closed by an ``end`` tag; ``set`` only in its block form, without ``=``.
_BLOCK_TAGS = frozenset({"if", "for", "macro", "call", "filter", "block", "with", "autoescape"})


def _syntax_error_line(source: str, exc: TemplateSyntaxError) -> int:
    """The line a writer should look at for ``exc``.

    Jinja reports the line where parsing failed: for ``{{ name`` left open it is the line of
    whatever follows, and for an unclosed ``{% if %}`` the last line. Point instead at the
    tag that was left open, or at the innermost block that was never closed.
    """
    line = exc.lineno
    opened: list[int] = []
    tag_line: int | None = None
    tag: list[tuple[str, str]] = []
    try:
        for lineno, kind, value in _TEXT_ENVIRONMENT.lex(source):
            if lineno > line:
                break
            if kind in ("variable_begin", "block_begin"):
                tag_line, tag = lineno, []
            elif kind == "variable_end":
                tag_line = None
            elif kind == "block_end" and tag_line is not None:
                _follow_blocks(tag, tag_line, opened)
                tag_line = None
            elif tag_line is not None and kind != "whitespace":
                tag.append((kind, value))
    except TemplateSyntaxError:
        pass
    if tag_line is not None and tag_line < line:
        return tag_line
    if exc.message and exc.message.startswith("Unexpected end of template") and opened:
        return opened[-1]
    return line


def _follow_blocks(tag: list[tuple[str, str]], line: int, opened: list[int]) -> None:
    if not tag or tag[0][0] != "name":
        return
    name = tag[0][1]
    block_set = name == "set" and ("operator", "=") not in tag
    if name in _BLOCK_TAGS or block_set:
        opened.append(line)
    elif name.startswith("end") and opened:
        opened.pop()


def _refuse_node(node: nodes.Node) -> None:
    line = node.lineno or 1
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name in RESERVED_NAMES:
        raise _Refusal(f"{node.name!r} is not available in templates", line)
    if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
        raise _Refusal(f"names starting with '_' ({node.attr!r}) cannot be used", line)
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
        and node.arg.value.startswith("_")
    ):
        raise _Refusal(f"names starting with '_' ({node.arg.value!r}) cannot be used", line)
    if isinstance(node, nodes.Extends | nodes.Include | nodes.Import | nodes.FromImport):
        raise _Refusal("templates cannot include, import or extend other templates", line)
    # What remains bounds the work of a render by the size of the template and its values:
    # without macros, recursive loops or loops inside loops, each part runs at most once per
    # item of one list, so no template can keep a worker busy for long (S29).
    if isinstance(node, nodes.Macro | nodes.CallBlock):
        raise _Refusal("templates cannot define macros", line)
    if isinstance(node, nodes.For) and node.recursive:
        raise _Refusal("recursive loops are not available in templates", line)
    if isinstance(node, nodes.For) and any(True for _inner in node.find_all(nodes.For)):
        raise _Refusal("a loop cannot contain another loop in a template", line)


@dataclass(slots=True)
class _RenderState:
    """What one render learns: the missing names, and the dotted path of each offered mapping."""

    values: Mapping[str, object]
    missing: list[str] = field(default_factory=list)
    paths: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in self.values.items():
            self._note(name, value)

    def _note(self, path: str, value: object) -> None:
        # Containers are keyed by id: they stay alive for the whole render, held by ``values``.
        if isinstance(value, Mapping):
            self.paths[id(value)] = path
            for key, item in value.items():
                self._note(f"{path}.{key}", item)
        elif isinstance(value, list | tuple):
            self.paths[id(value)] = path
            for index, item in enumerate(value):
                self._note(f"{path}[{index}]", item)


_current_render: ContextVar[_RenderState | None] = ContextVar("engage_render", default=None)


class _MissingValue(Undefined):
    """A missing value: renders as empty, notes its dotted name, and chains like a value.

    ``{{ regarding.name }}`` with no ``regarding`` at all is one missing value,
    ``regarding.name``, rather than an error. Testing it (``{% if %}``, ``or``) or giving it
    a ``default`` does not count as missing: only writing it out does.
    """

    __slots__ = ()

    @property
    def _path(self) -> str:
        name = str(self._undefined_name)
        parent = self._undefined_obj
        if parent is _MISSING_OBJECT:
            return name
        if isinstance(parent, _MissingValue):
            return f"{parent._path}.{name}"
        state = _current_render.get()
        prefix = state.paths.get(id(parent)) if state else None
        return f"{prefix}.{name}" if prefix else name

    @property
    def _undefined_message(self) -> str:
        return f"the value {self._path!r} is missing"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return type(self)(obj=self, name=name)

    # Jinja types the base method as never returning; chaining is the point here.
    def __getitem__(self, key: Any) -> _MissingValue:  # type: ignore[override]
        return type(self)(obj=self, name=str(key))

    def __str__(self) -> str:
        state = _current_render.get()
        if state is not None:
            state.missing.append(self._path)
        return ""


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, stricter: refusals raise, and costly operators are capped."""

    # Intercepting these also stops Jinja folding ``10 ** 10 ** 10`` while compiling.
    intercepted_binops = frozenset({"*", "**"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return not attr.startswith("_") and super().is_safe_attribute(obj, attr, value)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        # Jinja would return an Undefined that raises only when used; a missing value here
        # renders as empty, which would hide the attempt. Refuse at once instead.
        raise SecurityError(f"{attribute!r} cannot be used in templates")

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            if _is_int(left) and _is_int(right) and right > 0:
                if max(left.bit_length(), 1) * right > MAX_POWER_BITS:
                    raise SecurityError("the number is too large")
            elif isinstance(right, int | float) and abs(right) > MAX_POWER_BITS:
                raise SecurityError("the number is too large")
            return operator.pow(left, right)
        if operator_ == "*":
            for sized, count in ((left, right), (right, left)):
                repeated = isinstance(sized, str | list | tuple) and _is_int(count)
                if repeated and len(sized) * count > MAX_OUTPUT_CHARS:
                    raise SecurityError("the template produces too much text")
            return operator.mul(left, right)
        return super().call_binop(context, operator_, left, right)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _make_environment(*, autoescape: bool) -> _Sandbox:
    environment = _Sandbox(autoescape=autoescape, undefined=_MissingValue)
    # No globals at all: every value a template sees is one the caller offered. See
    # RESERVED_NAMES for why each default global is gone.
    environment.globals.clear()
    return environment


_HTML_ENVIRONMENT = _make_environment(autoescape=True)
_TEXT_ENVIRONMENT = _make_environment(autoescape=False)
