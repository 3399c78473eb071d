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

Every value a template computes is bounded, not only what it writes out: no text longer than
:data:`MAX_OUTPUT_CHARS`, no list longer than :data:`MAX_ITEMS`, no number larger than
:data:`MAX_POWER_BITS`, and no more than :data:`MAX_RENDER_WORK` work in all. Whatever can grow
with an argument (``"x" * n``, ``replace``, ``center``, ``format``, ``join``, …) is measured
from its arguments before it runs, so nothing too large is ever built; whatever only changes
its input by a small factor (``upper``, ``escape``, ``tojson``, …) is measured after. The parts
of a template that need no value are worked out when it is saved, under the same limits, so
``{{ "x" * 10 ** 8 }}`` is refused on save with its line rather than on every rep's Apply.
"""

from __future__ import annotations

import functools
import re
import types
from _string import formatter_field_name_split
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence, Sized
from contextvars import ContextVar
from dataclasses import dataclass, field
from string import Formatter
from typing import Any, TypeVar

from jinja2 import Template, TemplateError, TemplateSyntaxError, Undefined, nodes, pass_eval_context
from jinja2.filters import make_attrgetter
from jinja2.parser import Parser
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedFormatter,
    SecurityError,
)
from jinja2.utils import missing as _MISSING_OBJECT
from jinja2.visitor import NodeTransformer
from markupsafe import EscapeFormatter, Markup

from .i18n import gettext as _
from .records import Record

#: The longest template source accepted, in bytes of UTF-8.
MAX_TEMPLATE_BYTES = 100 * 1024
#: The longest text a template may produce, in characters; also the longest text any step of
#: a template may compute (``"x" * n``, ``replace``, ``center``, ``format``, ``join``, …).
MAX_OUTPUT_CHARS = 1_000_000
#: The most items a list, tuple or mapping a template computes may hold (``[0] * n``,
#: ``batch``, ``slice``, ``list``, ``split``, …), and the most times one loop may go round.
MAX_ITEMS = 10_000
#: The largest number a template may compute (``a ** b``, ``a * b``), in bits.
MAX_POWER_BITS = 4096
#: The most work one render may do, in characters: each character a step computes, compares
#: or writes out counts one, each item it walks through a few more, and each node of a loop's
#: body ten each time round. This bounds the time of a render as the limits above bound its
#: memory.
MAX_RENDER_WORK = 10 * MAX_OUTPUT_CHARS
#: The deepest a template's expressions and tags may nest; deeper, compiling it would exhaust
#: Python's stack.
MAX_NESTING = 100

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
    TemplateField("recipient.type_label", _n("Recipient's record type"), _n("Contact")),
    TemplateField("regarding.name", _n("Regarding record's name"), _n("Analytical Engine upgrade")),
    TemplateField("regarding.type_label", _n("Regarding record's type"), _n("Opportunity")),
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

    Does not render: no value is filled in. Reports Jinja syntax errors and constructs the
    sandbox would refuse (such as ``__class__`` or ``config``), each with its 1-based line, and
    works out the parts that need no value under the limits of a render, so what is certain
    to be refused then (``9 ** 9 ** 9``, ``"x" * 10 ** 8``, ``name | center(10 ** 8)``) is
    refused now.
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
        large, or would compute or produce too much; the message names the line when known.
    :raises TemplateBroken: on a syntax error or an error while rendering.
    """
    environment = _HTML_ENVIRONMENT if html else _TEXT_ENVIRONMENT
    template: Template | None
    try:
        template = _compiled(source, html)
    except _Refusal as exc:
        raise TemplateRefused(f"Line {exc.line}: {exc}") from None
    except TemplateBroken:
        raise
    except Exception:  # noqa: BLE001
        template = None  # compiling failed: done again below, where its error is explained
    state = _RenderState(values)
    token = _current_render.set(state)
    try:
        if template is None:
            template = environment.from_string(_Measured(environment).visit(_parse(source)))
        parts: list[str] = []
        length = 0
        for part in template.generate(**values):
            length += len(part)
            if length > MAX_OUTPUT_CHARS:
                raise SecurityError("the template produces too much text")
            parts.append(part)
    except SecurityError as exc:
        line = _template_line(exc)
        if line is None:
            raise TemplateRefused(f"This template is not allowed: {exc}.") from None
        raise TemplateRefused(f"Line {line}: {exc}") from None
    except TemplateSyntaxError as exc:
        raise TemplateBroken(explain_syntax_error(exc.message), line=exc.lineno) from None
    except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
        raise TemplateBroken(f"The template could not be filled in: {exc}") from None
    finally:
        _current_render.reset(token)
    return Rendered("".join(parts), tuple(dict.fromkeys(state.missing)))


@functools.lru_cache(maxsize=256)
def _compiled(source: str, html: bool) -> Template:
    """``source`` parsed, checked, measured and compiled, once per process: a sequence renders
    one template for every recipient, and compiling costs more than rendering. What a render
    may do is enforced while it runs (:class:`_RenderState`), so the compiled form is shared."""
    environment = _HTML_ENVIRONMENT if html else _TEXT_ENVIRONMENT
    return environment.from_string(_Measured(environment).visit(_parse(source)))


#: Jinja's messages for the usual slips, and engage's explanation of each (S45: the writer
#: reads them in their own language, not Jinja's English).
_SYNTAX_SLIPS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (
        re.compile(r"unexpected end of template, expected 'end of print statement'", re.I),
        lambda m: _("A value is not closed: end it with }}."),
    ),
    (
        re.compile(r"innermost block that needs to be closed is '(\w+)'"),
        lambda m: _(
            "The “%(tag)s” block is never closed: add {%% end%(tag)s %%} where it ends.",
            tag=m.group(1),
        ),
    ),
    (
        re.compile(r"Encountered unknown tag '(\w+)'"),
        lambda m: _(
            "“%(tag)s” is not a tag templates know, or it closes a block that was never opened.",
            tag=m.group(1),
        ),
    ),
    (
        re.compile(r"Expected an expression, got 'end of print statement'"),
        lambda m: _("The braces are empty: write a value between {{ and }}."),
    ),
    (
        re.compile(r"expected token 'end of print statement', got '(.*)'"),
        lambda m: _(
            "Unexpected “%(got)s” in a value: one value per pair of braces, closed with }}.",
            got=m.group(1),
        ),
    ),
    (
        re.compile(r"unexpected 'end of print statement'"),
        lambda m: _("The value ends too early: something is missing before }}."),
    ),
    (
        re.compile(r"unexpected '([}%])'"),
        lambda m: _(
            "A stray “%(char)s”: values are written {{ name }}, tags {%% if … %%}.", char=m.group(1)
        ),
    ),
    (
        re.compile(r"Missing end of comment tag"),
        lambda m: _("A comment is not closed: end it with #}."),
    ),
    (
        re.compile(r"unexpected end of template", re.I),
        lambda m: _("The template ends in the middle of a value or tag: close it."),
    ),
]


def explain_syntax_error(message: str | None) -> str:
    """engage's own explanation of a Jinja syntax error, in the writer's language."""
    for pattern, explain in _SYNTAX_SLIPS:
        if match := pattern.search(message or ""):
            return explain(match)
    return _("This is not valid template syntax: check the braces on this line.")


def _template_line(exc: BaseException) -> int | None:
    """The template line ``exc`` was raised on, from the frames Jinja rewrites to show it."""
    line = None
    frame = exc.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename == "<template>":
            line = frame.tb_lineno
        frame = frame.tb_next
    return line


class _Refusal(Exception):
    """A construct found while checking the parsed template, before anything runs."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


#: Digits Python will not turn into a number (``sys.get_int_max_str_digits``), which Jinja's
#: lexer fails on without a line.
_TOO_MANY_DIGITS = re.compile(r"\d{4301,}")


def _parse(source: str) -> nodes.Template:
    """Parse ``source`` and refuse what can be refused without running it."""
    if len(source.encode("utf-8")) > MAX_TEMPLATE_BYTES:
        raise _Refusal(f"the template is longer than {MAX_TEMPLATE_BYTES // 1024} KB", 1)
    try:
        # The parser tokenises as it is made: an unclosed comment fails here already.
        parser = Parser(_TEXT_ENVIRONMENT, source)
    except TemplateSyntaxError as exc:
        raise TemplateBroken(explain_syntax_error(exc.message), line=exc.lineno or 1) from None
    try:
        tree = parser.parse()
    except TemplateSyntaxError as exc:
        line = _syntax_error_line(source, exc)
        raise TemplateBroken(explain_syntax_error(exc.message), line=line) from None
    except RecursionError:
        raise _Refusal(_too_deep(), parser.stream.current.lineno) from None
    except ValueError:
        digits = _TOO_MANY_DIGITS.search(source)
        line = source.count("\n", 0, digits.start()) + 1 if digits else 1
        raise _Refusal("a number in the template has too many digits", line) from None
    _refuse_nesting(tree)
    for node in tree.find_all(nodes.Node):
        _refuse_node(node)
    _ConstantCheck().run(tree)
    return tree


def _too_deep() -> str:
    return f"the template nests more than {MAX_NESTING} levels deep"


def _refuse_nesting(tree: nodes.Template) -> None:
    # Walked with a list rather than recursion: the point is that recursion could run out.
    stack: list[tuple[nodes.Node, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            raise _Refusal(_too_deep(), node.lineno or 1)
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())


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
    # What remains bounds the work of a render by the size of the template: without macros,
    # recursive loops or loops inside loops, each part runs at most once per item of one list
    # of at most MAX_ITEMS, and each step is capped (see "Limits" below), so no template can
    # keep a worker busy for long (S29).
    if isinstance(node, nodes.Macro | nodes.CallBlock):
        raise _Refusal("templates cannot define macros", line)
    if isinstance(node, nodes.For) and node.recursive:
        raise _Refusal("recursive loops are not available in templates", line)
    if isinstance(node, nodes.For) and any(True for _inner in node.find_all(nodes.For)):
        raise _Refusal("a loop cannot contain another loop in a template", line)


# ---- Limits on what a template computes ------------------------------------------------------
#
# Every step of a render that makes a value goes through here: the filters, the methods of
# strings and numbers, the operators, ``~``, slices, loops and the text written out. A step
# whose result can grow with an argument is measured from its arguments before it runs; one
# that only changes its input by a small factor is measured after. Each step also counts its
# work (_charge), against MAX_RENDER_WORK for the whole render.

_T = TypeVar("_T")


def _text_too_long() -> SecurityError:
    return SecurityError(f"a text would be longer than {MAX_OUTPUT_CHARS:,} characters")


def _check_chars(count: int) -> None:
    if count > MAX_OUTPUT_CHARS:
        raise _text_too_long()


_LIST_TOO_LONG = "a list would have more than {} items"
_LOOP_TOO_LONG = "a loop would go round more than {} times"


def _check_items(count: int, message: str = _LIST_TOO_LONG) -> None:
    if count > MAX_ITEMS:
        raise SecurityError(message.format(f"{MAX_ITEMS:,}"))


def _check_bits(bits: int) -> None:
    if bits > MAX_POWER_BITS:
        raise SecurityError(f"a number would be larger than {MAX_POWER_BITS} bits")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _charge(amount: int) -> None:
    """Count ``amount`` of work against the render's MAX_RENDER_WORK."""
    state = _current_render.get()
    if state is None:
        return
    state.work += amount
    if state.work > MAX_RENDER_WORK:
        raise SecurityError(
            f"filling in the template takes more than {MAX_RENDER_WORK:,} steps of work"
        )


def _work_left() -> int:
    state = _current_render.get()
    return MAX_RENDER_WORK - state.work if state is not None else MAX_RENDER_WORK


#: The work of one step run by Python rather than copied in bulk, in characters: a node of a
#: loop's body each time round, a value written out. Copying ten characters takes less.
_STEP = 10
#: What each item inside a container adds to its text at most, besides its own text: quotes,
#: separators, brackets, a ``Markup(…)`` around it, or the repr of a number, ``None`` or a
#: missing value. Also the work of walking to it.
_ITEM_OVERHEAD = 32
_END = object()


def _text_bound(value: object, limit: int = MAX_OUTPUT_CHARS, indent: int = 0) -> int:
    """How long ``value`` is as text (``str``, ``repr``, JSON, or pretty printed with ``indent``
    per level) at most, escapes left aside; any number above ``limit`` once it is past it.

    Containers are walked, not written: a list holding the same long text ten thousand times is
    measured in a few short steps, never built. The escapes a repr, JSON or HTML add make a
    text a few times longer at most, and are measured after, on the result.
    """
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, Undefined):
        return 0
    if _is_int(value):
        return _int_text_bound(value)  # type: ignore[arg-type]
    if value is None or isinstance(value, bool | float):
        return _ITEM_OVERHEAD
    total = 0
    stack: list[Iterator[object]] = [iter((value,))]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
            continue
        total += _ITEM_OVERHEAD + indent * len(stack)
        if isinstance(item, str | bytes | bytearray):
            total += len(item)
        elif _is_int(item):
            total += _int_text_bound(item)  # type: ignore[arg-type]
        elif item is None or isinstance(item, bool | float | Undefined):
            pass
        elif isinstance(item, Mapping):
            stack.append(iter(item.items()))
        elif isinstance(item, Collection):
            stack.append(iter(item))
        else:
            total += len(repr(item))
        if total > limit:
            break
    return total


def _int_text_bound(number: int) -> int:
    # Enough for the number in binary with a separator every four digits, and so in any base.
    bits = number.bit_length()
    return bits + bits // 3 + 8


def _weigh(*values: object) -> None:
    """Count the work of reading ``values`` through (comparing, searching, converting)."""
    left = _work_left()
    work = 0
    for value in values:
        work += len(value) if type(value) is str else _text_bound(value, left - work)
    _charge(work)


def _checked(value: _T) -> _T:
    """``value``, once it is sure to be within the limits; its size counts as work."""
    if isinstance(value, str | bytes | bytearray):
        _check_chars(len(value))
        _charge(len(value))
    elif isinstance(value, list | tuple | Mapping | set | frozenset):
        _check_items(len(value))
        _charge(len(value))
    elif _is_int(value):
        _check_bits(value.bit_length())  # type: ignore[attr-defined]
    return value


def _as_text(value: object) -> str:
    """``value`` as a filter turns it into text; a missing value is empty."""
    if isinstance(value, str):
        return value
    return "" if isinstance(value, Undefined) else str(value)


def _bounded(value: Any) -> Any:
    """``value`` to go through item by item, refused once it has more than MAX_ITEMS items."""
    if isinstance(value, Sized):
        _check_items(len(value))
        return value
    if isinstance(value, Iterable):
        return _at_most(value)
    return value


def _at_most(items: Iterable[Any], per_item: int = 0, message: str = _LIST_TOO_LONG) -> Any:
    for count, item in enumerate(items, 1):
        _check_items(count, message)
        _charge(per_item)
        yield item


#: The characters ``str.splitlines`` breaks at.
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def _line_count(text: str | bytes) -> int:
    """How many lines ``text`` has at most."""
    if isinstance(text, bytes):
        return text.count(b"\n") + text.count(b"\r") + 1
    return sum(text.count(mark) for mark in _LINE_BREAKS) + 1


_WORDS = re.compile(r"\S+")
_BYTE_WORDS = re.compile(rb"\S+")


def _word_count(text: str | bytes) -> int:
    """The number of words of ``text``, or MAX_ITEMS + 1 when there are more."""
    words = _BYTE_WORDS.finditer(text) if isinstance(text, bytes) else _WORDS.finditer(text)  # type: ignore[arg-type]
    count = 0
    for _word in words:
        count += 1
        if count > MAX_ITEMS:
            break
    return count


def _replaced_length(text: str | bytes, old: object, new: object, count: object) -> int:
    """How long ``text.replace(old, new, count)`` is at most, without replacing anything."""
    if isinstance(old, str | bytes) and isinstance(old, str) == isinstance(text, str):
        hits = text.count(old) if old else len(text) + 1  # type: ignore[arg-type]
        old_length = len(old)
    else:
        hits, old_length = len(text) + 1, 0
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(0, _text_bound(new) - old_length)


def _argument(args: Sequence[Any], kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


def _width(value: object) -> int:
    """The characters an ``indent`` or ``tojson`` step adds per line: a count or a text."""
    if isinstance(value, str):
        return len(value)
    return value if _is_int(value) else 0  # type: ignore[return-value]


def _argument_limits(name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """Refuse the arguments that make the filter or method ``name`` too large whatever it is
    applied to: a ``center`` wider than MAX_OUTPUT_CHARS is too wide for any text.

    Used while rendering and, with the arguments written as literals, when saving.
    """
    if name in ("center", "ljust", "rjust", "zfill"):
        width = _argument(args, kwargs, 0, "width")
        if _is_int(width):
            _check_chars(width)
    elif name in ("indent", "tojson"):
        # Both build their indentation before looking at the text.
        _check_chars(_width(_argument(args, kwargs, 0, "indent" if name == "tojson" else "width")))
    elif name == "to_bytes":
        length = _argument(args, kwargs, 0, "length")
        if _is_int(length):
            _check_chars(length)
    elif name in ("batch", "slice"):
        count = _argument(args, kwargs, 0, "linecount" if name == "batch" else "slices")
        if _is_int(count):
            _check_items(count)


# -- Formatting: ``%``, the ``format`` filter, ``str.format`` -------------------------------------

#: Enough for any number written with a format and no width: ``"%f" % 1e308`` is 316 characters.
_NUMBER_SLACK = 330
_DIGITS = re.compile(r"\d+", re.ASCII)
_PERCENT_SPEC = re.compile(r"[-+ #0]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?(.?)", re.ASCII | re.DOTALL)


def _number(digits: str) -> int:
    # More digits than this are past every limit; int() would refuse thousands of them.
    return int(digits) if len(digits) < 10 else 10**10


def _largest_number(text: str) -> int:
    return max((_number(digits) for digits in _DIGITS.findall(text)), default=0)


def _percent_length(template: str | bytes, values: object) -> int:
    """How long ``template % values`` is at most, without formatting anything.

    Follows Python's own reading of ``%`` conversions: each takes a width and a precision
    (written, or ``*`` taken from the values), and a value, or several for a mapping key used
    more than once.
    """
    text = template.decode("latin-1") if isinstance(template, bytes) else template
    conversions = padding = stars = 0
    position = text.find("%")
    while position >= 0:
        position += 1
        if text.startswith("(", position):
            depth = 0
            while position < len(text):
                depth += {"(": 1, ")": -1}.get(text[position], 0)
                position += 1
                if depth == 0:
                    break
        spec = _PERCENT_SPEC.match(text, position)
        assert spec is not None  # every part of the pattern may be empty
        width, precision, kind = spec.groups()
        for part in (width, precision or ""):
            if part == "*":
                stars += 1
            elif part:
                padding += _number(part)
        if kind != "%":
            conversions += 1
        position = text.find("%", spec.end())
    if isinstance(values, Mapping):
        largest = max((_text_bound(value) for value in values.values()), default=0)
        value_length = max(conversions * largest, _text_bound(values))
    elif isinstance(values, tuple):
        value_length = sum(_text_bound(value) for value in values)
    else:
        value_length = _text_bound(values) if values is not None else 0
    if stars:
        numbers = values if isinstance(values, tuple) else (values,)
        padding += stars * max((abs(n) for n in numbers if _is_int(n)), default=0)
    return len(text) + padding + value_length + conversions * _NUMBER_SLACK


def _field_length(value: object, spec: str) -> int:
    """How long ``format(value, spec)`` is at most."""
    slack = _NUMBER_SLACK if isinstance(value, float) else 0
    return _text_bound(value) + _largest_number(spec) + slack


class _CappedFormatter(SandboxedFormatter):
    """``str.format`` in templates: each field is measured before it is written."""

    def __init__(self, env: Any, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self._length = 0

    def vformat(self, format_string: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        self._length = len(format_string)
        return super().vformat(format_string, args, kwargs)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is not None:
            _check_chars(_text_bound(value))
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        self._length += _field_length(value, format_spec)
        _check_chars(self._length)
        return super().format_field(value, format_spec)


class _CappedEscapeFormatter(_CappedFormatter, EscapeFormatter):
    """:class:`_CappedFormatter` for ``Markup`` text, which escapes what it fills in."""


# -- Filters and tests ------------------------------------------------------------------------

#: Filters that turn their value into text: the text is measured first, so a list holding a
#: long text many times is refused rather than written out.
_TEXT_FILTERS = frozenset(
    {"capitalize", "center", "e", "escape", "forceescape", "format", "indent", "lower"}
    | {"pprint", "replace", "safe", "string", "striptags", "title", "trim", "truncate"}
    | {"upper", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr"}
)
#: Filters that go through their value item by item, making a list or a value from them.
_ITEM_FILTERS = frozenset(
    {"batch", "dictsort", "groupby", "items", "join", "list", "map", "max", "min", "reject"}
    | {"rejectattr", "reverse", "select", "selectattr", "slice", "sort", "sum", "unique"}
)
#: Of those, the one that turns a text around at once rather than item by item.
_TEXT_RESULT = frozenset({"reverse"})
#: Filters and tests whose work does not depend on the size of what they are given.
_CHEAP = frozenset(
    {"attr", "count", "d", "default", "first", "last", "length", "random"}
    | {"boolean", "callable", "defined", "divisibleby", "escaped", "even", "false", "filter"}
    | {"float", "integer", "iterable", "mapping", "none", "number", "odd", "sameas"}
    | {"sequence", "string", "test", "true", "undefined"}
)


def _prepare_replace(s: Any, old: Any, new: Any, count: Any = None) -> Any:
    text = _as_text(s)
    _check_chars(_replaced_length(text, _as_text(old), new, -1 if count is None else count))
    return s


def _prepare_indent(s: Any, width: Any = 4, first: Any = False, blank: Any = False) -> Any:
    text = _as_text(s)
    _check_chars(len(text) + _line_count(text) * (max(_width(width), 0) + 1))
    return s


def _prepare_format(value: Any, *args: Any, **kwargs: Any) -> Any:
    _check_chars(_percent_length(_as_text(value), kwargs or args))
    return value


def _prepare_join(value: Any, d: Any = "", attribute: Any = None) -> Any:
    items = list(value)
    if attribute is not None:
        get = make_attrgetter(_TEXT_ENVIRONMENT, attribute)
        parts: Iterable[Any] = (get(item) for item in items)
    else:
        parts = items
    length = _text_bound(d) * max(len(items) - 1, 0)
    for part in parts:
        length += _text_bound(part, MAX_OUTPUT_CHARS - length)
        _check_chars(length)
    return items


def _prepare_sum(iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    items = list(iterable)
    if isinstance(start, list | tuple):
        get = make_attrgetter(_TEXT_ENVIRONMENT, attribute) if attribute is not None else None
        values = [get(item) if get else item for item in items]
        total = len(start) + sum(len(v) for v in values if isinstance(v, list | tuple))
        _check_items(total)
        # Adding lists one by one copies the sum so far each time.
        _charge(len(items) * total)
    return items


def _prepare_wordwrap(
    s: Any,
    width: Any = 79,
    break_long_words: Any = True,
    wrapstring: Any = None,
    break_on_hyphens: Any = True,
) -> Any:
    text = _as_text(s)
    if not _is_int(width) or width <= 0:
        return s  # textwrap refuses it
    # Every line holds at least one character, and each line is joined with ``wrapstring``.
    joiner = 1 if wrapstring is None else _text_bound(wrapstring)
    _check_chars(len(text) + (len(text) + _line_count(text)) * joiner)
    if break_long_words and len(text) > width:
        # textwrap cuts a long word one line at a time, copying the rest of it each time.
        words = re.finditer(r"[^\t\n\x0b\x0c\r ]{" + str(width + 1) + ",}", text)
        _charge(sum((w.end() - w.start()) ** 2 // (2 * width) for w in words))
    return s


def _prepare_urlize(
    value: Any,
    trim_url_limit: Any = None,
    nofollow: Any = False,
    target: Any = None,
    rel: Any = None,
    extra_schemes: Any = None,
) -> Any:
    text = _as_text(value)
    words = _word_count(text)
    _check_items(words, "a text to find links in would have more than {} words")
    extra = sum(_text_bound(a) for a in (target, rel) if isinstance(a, str))
    _check_chars(len(text) + words * extra)
    return value


def _prepare_tojson(value: Any, indent: Any = None) -> Any:
    _check_chars(_text_bound(value, indent=max(_width(indent), 0)))
    return value


_PREPARE: dict[str, Callable[..., Any]] = {
    "format": _prepare_format,
    "indent": _prepare_indent,
    "join": _prepare_join,
    "replace": _prepare_replace,
    "sum": _prepare_sum,
    "tojson": _prepare_tojson,
    "urlize": _prepare_urlize,
    "wordwrap": _prepare_wordwrap,
}


def _capped_filter(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """``original`` with its arguments measured before and its result after.

    The wrapper takes the same arguments, the context or environment Jinja passes first
    included (``functools.wraps`` keeps the mark that asks Jinja for it).
    """
    offset = 0 if getattr(original, "jinja_pass_arg", None) is None else 1
    prepare = _PREPARE.get(name)
    makes_text, by_item = name in _TEXT_FILTERS, name in _ITEM_FILTERS
    whole_text, cheap = name in _TEXT_RESULT, name in _CHEAP

    @functools.wraps(original)
    def capped(*args: Any, **kwargs: Any) -> Any:
        if len(args) > offset:
            value, rest = args[offset], args[offset + 1 :]
            if rest or kwargs:
                _argument_limits(name, rest, kwargs)
            if makes_text and type(value) is not str:
                _check_chars(_text_bound(value))
            if by_item and not (whole_text and isinstance(value, str)):
                value = _bounded(value)
            if prepare is not None:
                value = prepare(value, *rest, **kwargs)
            if not cheap:
                _weigh(value, *rest, *kwargs.values())
            args = (*args[:offset], value, *rest)
        return _checked(original(*args, **kwargs))

    return capped


def _capped_test(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """``original``, counting the work of comparing or searching what it is given."""
    if name in _CHEAP:
        return original
    offset = 0 if getattr(original, "jinja_pass_arg", None) is None else 1

    @functools.wraps(original)
    def weighed(*args: Any, **kwargs: Any) -> Any:
        _weigh(*args[offset:], *kwargs.values())
        return original(*args, **kwargs)

    return weighed


# -- Filters the render adds itself (see _Measured); their names cannot be written in a template.

_LOOP = "engage:loop"
_CONCAT = "engage:concat"
_WEIGH = "engage:weigh"


def _loop_items(iterable: Any, body_size: int) -> Any:
    """The items of a loop, at most MAX_ITEMS; each time round counts a step for each node of
    the loop's body."""
    if isinstance(iterable, Sized):
        _check_items(len(iterable), _LOOP_TOO_LONG)
        _charge(len(iterable) * body_size * _STEP)
        return iterable
    if isinstance(iterable, Iterable):
        return _at_most(iterable, body_size * _STEP, _LOOP_TOO_LONG)
    return iterable


@pass_eval_context
def _concat(eval_ctx: nodes.EvalContext, parts: list[Any]) -> str:
    """``a ~ b ~ …``, measured before it is joined."""
    length = 0
    for part in parts:
        length += _text_bound(part, MAX_OUTPUT_CHARS - length)
        _check_chars(length)
    return _checked(markup_join(parts) if eval_ctx.autoescape else str_join(parts))


def _weighed(value: _T) -> _T:
    _weigh(value)
    return value


def _join_output(pieces: Iterable[str]) -> str:
    """The text of a ``{% set %}…{% endset %}`` or ``{% filter %}`` block, measured before it
    is joined (Jinja's ``Environment.concat``)."""
    pieces = pieces if isinstance(pieces, list) else list(pieces)
    _check_chars(sum(len(piece) for piece in pieces))
    return _checked("".join(pieces))


def _finalize(value: Any) -> Any:
    """Every ``{{ value }}`` written out is measured before it is turned into text."""
    length = _text_bound(value)
    _check_chars(length)
    _charge(max(length, _STEP))
    return value


def _private_filter(node: nodes.Expr, name: str, *args: nodes.Expr) -> nodes.Filter:
    return nodes.Filter(node, name, list(args), [], None, None, lineno=node.lineno)


class _Measured(NodeTransformer):
    """Route what the sandbox cannot intercept through the limits: each loop's items, the text
    of ``~``, and what a comparison reads (``==``, ``in``, ``<`` on long texts or lists)."""

    def __init__(self, environment: _Sandbox) -> None:
        self.environment = environment

    def visit_Template(self, node: nodes.Template) -> nodes.Template:
        self.generic_visit(node)
        node.set_environment(self.environment)
        return node

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        parts = [*node.body, *([node.test] if node.test else [])]
        size = 1 + sum(1 for part in parts for _node in part.find_all(nodes.Node)) + len(parts)
        items = node.iter
        assert isinstance(items, nodes.Expr)
        node.iter = _private_filter(items, _LOOP, nodes.Const(size, lineno=node.lineno))
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _private_filter(nodes.List(node.nodes, lineno=node.lineno), _CONCAT)

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        node.expr = _private_filter(node.expr, _WEIGH)
        for operand in node.ops:
            operand.expr = _private_filter(operand.expr, _WEIGH)
        return node


# -- Saving: working out what needs no value ----------------------------------------------------

_UNKNOWN: Any = object()
#: Filters that take the name of an attribute, and where: its position among the arguments
#: after the value, if it has one, and its keyword.
_ATTRIBUTE_ARGUMENTS: dict[str, tuple[int | None, str]] = {
    "attr": (0, "name"),
    "groupby": (0, "attribute"),
    "join": (1, "attribute"),
    "map": (None, "attribute"),
    "max": (1, "attribute"),
    "min": (1, "attribute"),
    "rejectattr": (0, "attr"),
    "selectattr": (0, "attr"),
    "sort": (2, "attribute"),
    "sum": (0, "attribute"),
    "unique": (1, "attribute"),
}


def _private_name(name: object) -> str | None:
    """The part of an attribute path (``"a._b"``) a template may not use, if any."""
    if isinstance(name, str):
        for part in name.split("."):
            if part.startswith("_"):
                return part
    return None


def _refuse_private(name: object, line: int) -> None:
    private = _private_name(name)
    if private is not None:
        raise _Refusal(f"names starting with '_' ({private!r}) cannot be used", line)


class _ConstantCheck:
    """Work out, under the limits of a render, every part of a template that needs no value.

    A literal too large to compute (``9 ** 9 ** 9``, ``"x" * 1e8``), an argument too large
    for any value (``name | center(10 ** 8)``) and a private name spelled out in a literal
    (``name | attr("__class__")``, ``"{0.__class__}".format(name)``) are all refused with
    their line. Anything else that fails (``1 / 0``) is left for the render to report.
    """

    def __init__(self) -> None:
        self.environment = _TEXT_ENVIRONMENT
        self.values: dict[int, Any] = {}
        self.context: Context | None = None

    def run(self, tree: nodes.Template) -> None:
        token = _current_render.set(_RenderState({}))
        try:
            for node in tree.find_all(nodes.Node):
                line = node.lineno or 1
                try:
                    self.check(node)
                except SecurityError as exc:
                    raise _Refusal(str(exc), line) from None
        finally:
            _current_render.reset(token)

    def check(self, node: nodes.Node) -> None:
        line = node.lineno or 1
        if isinstance(node, nodes.Expr):
            self.value(node)
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Expr):
            _refuse_private(self.value(node.arg), line)
        elif isinstance(node, nodes.Filter):
            args, kwargs = self.arguments(node)
            _argument_limits(node.name, args, kwargs)
            if node.name in _ATTRIBUTE_ARGUMENTS:
                position, keyword = _ATTRIBUTE_ARGUMENTS[node.name]
                attribute = kwargs.get(keyword, _UNKNOWN)
                if position is not None and len(args) > position:
                    attribute = args[position]
                if node.name == "attr":
                    if isinstance(attribute, str) and attribute.startswith("_"):
                        _refuse_private(attribute, line)
                else:
                    _refuse_private(attribute, line)
            if node.name == "format" and node.node is not None:
                template = self.value(node.node)
                if isinstance(template, str):
                    _check_chars(_percent_length(template, None))
        elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
            args, kwargs = self.arguments(node)
            name = node.node.attr
            _argument_limits(name, args, kwargs)
            owner = self.value(node.node.node)
            if isinstance(owner, str) and name in ("format", "format_map"):
                self.check_format(owner, line)
        elif isinstance(node, nodes.Mod):
            template = self.value(node.left)
            if isinstance(template, str | bytes):
                _check_chars(_percent_length(template, None))
        elif isinstance(node, nodes.For) and isinstance(node.iter, nodes.Expr):
            items = self.value(node.iter)
            if items is not _UNKNOWN:
                _loop_items(items, 1)

    def check_format(self, template: str, line: int) -> None:
        length = len(template)
        try:
            fields = list(Formatter().parse(template))
        except ValueError:
            return
        for _text, name, spec, _conversion in fields:
            if name is None:
                continue
            try:
                _first, rest = formatter_field_name_split(name)
                keys = [key for _is_attribute, key in rest]
            except ValueError:
                return
            for key in keys:
                if isinstance(key, str) and key.startswith("_"):
                    _refuse_private(key, line)
            if spec and "{" not in spec:
                length += _largest_number(spec)
                _check_chars(length)

    def arguments(self, node: nodes.Filter | nodes.Call) -> tuple[list[Any], dict[str, Any]]:
        args = [self.value(arg) for arg in node.args]
        kwargs = {str(keyword.key): self.value(keyword.value) for keyword in node.kwargs}
        return args, kwargs

    def value(self, node: nodes.Expr) -> Any:
        """The value of ``node`` if it needs no value from outside, else ``_UNKNOWN``."""
        key = id(node)
        if key not in self.values:
            self.values[key] = _UNKNOWN
            try:
                self.values[key] = self.evaluate(node)
            except _Refusal:
                raise
            except SecurityError as exc:
                raise _Refusal(str(exc), node.lineno or 1) from None
            except Exception:
                # Left for the render to report, as a value that could not be filled in.
                self.values[key] = _UNKNOWN
        return self.values[key]

    def evaluate(self, node: nodes.Expr) -> Any:
        environment = self.environment
        if isinstance(node, nodes.Const):
            return node.value
        if isinstance(node, nodes.List | nodes.Tuple):
            if isinstance(node, nodes.Tuple) and node.ctx != "load":
                return _UNKNOWN
            items = [self.value(item) for item in node.items]
            if _UNKNOWN in items:
                return _UNKNOWN
            return items if isinstance(node, nodes.List) else tuple(items)
        if isinstance(node, nodes.Dict):
            pairs = [(self.value(pair.key), self.value(pair.value)) for pair in node.items]
            if any(_UNKNOWN in pair for pair in pairs):
                return _UNKNOWN
            return dict(pairs)
        if isinstance(node, nodes.Concat):
            parts = [self.value(part) for part in node.nodes]
            if _UNKNOWN in parts:
                return _UNKNOWN
            return _concat(nodes.EvalContext(environment), parts)
        if isinstance(node, nodes.BinExpr):
            left, right = self.value(node.left), self.value(node.right)
            if left is _UNKNOWN or right is _UNKNOWN:
                return _UNKNOWN
            if node.operator in environment.intercepted_binops:
                return environment.call_binop(self.new_context(), node.operator, left, right)
            return environment.binop_table[node.operator](left, right)
        if isinstance(node, nodes.Neg | nodes.Pos):
            operand = self.value(node.node)
            if operand is _UNKNOWN:
                return _UNKNOWN
            return environment.unop_table[node.operator](operand)
        if isinstance(node, nodes.Getattr):
            owner = self.value(node.node)
            if owner is _UNKNOWN:
                return _UNKNOWN
            return self.known(environment.getattr(owner, node.attr))
        if isinstance(node, nodes.Getitem):
            owner, argument = self.value(node.node), self.value(node.arg)
            if owner is _UNKNOWN or argument is _UNKNOWN:
                return _UNKNOWN
            return self.known(environment.getitem(owner, argument))
        if isinstance(node, nodes.Slice):
            bounds = [
                self.value(part) if part else None for part in (node.start, node.stop, node.step)
            ]
            return _UNKNOWN if _UNKNOWN in bounds else slice(*bounds)
        if isinstance(node, nodes.Filter | nodes.Call):
            if node.dyn_args is not None or node.dyn_kwargs is not None:
                return _UNKNOWN
            args, kwargs = self.arguments(node)
            if _UNKNOWN in args or _UNKNOWN in kwargs.values():
                return _UNKNOWN
            if isinstance(node, nodes.Filter):
                if node.node is None or node.name not in environment.filters:
                    return _UNKNOWN
                value = self.value(node.node)
                if value is _UNKNOWN:
                    return _UNKNOWN
                return environment.call_filter(
                    node.name,
                    value,
                    args,
                    kwargs,
                    context=self.new_context(),
                    eval_ctx=nodes.EvalContext(environment),
                )
            function = self.value(node.node)
            if function is _UNKNOWN:
                return _UNKNOWN
            return self.known(environment.call(self.new_context(), function, *args, **kwargs))
        return _UNKNOWN

    def new_context(self) -> Context:
        if self.context is None:
            self.context = self.environment.from_string("").new_context({})
        return self.context

    @staticmethod
    def known(value: Any) -> Any:
        # A generator would be used up by whoever reads it first; a missing value is unknown.
        if isinstance(value, Undefined | types.GeneratorType):
            return _UNKNOWN
        return value


@dataclass(slots=True)
class _RenderState:
    """What one render learns: the missing names, the dotted path of each offered mapping, and
    the work done so far."""

    values: Mapping[str, object]
    missing: list[str] = field(default_factory=list)
    paths: dict[int, str] = field(default_factory=dict)
    #: The work done so far, against MAX_RENDER_WORK.
    work: int = 0

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
    """Jinja's immutable sandbox, stricter: refusals raise, and every step is capped."""

    # Intercepting these also stops Jinja folding ``10 ** 10 ** 10`` while compiling.
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    # The text of ``{% set %}…{% endset %}`` and ``{% filter %}`` blocks.
    concat = staticmethod(_join_output)  # type: ignore[assignment]

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return not attr.startswith("_") and super().is_safe_attribute(obj, attr, value)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        # Jinja would return an Undefined that raises only when used; a missing value here
        # renders as empty, which would hide the attempt. Refuse at once instead.
        raise SecurityError(f"{attribute!r} cannot be used in templates")

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            if _is_int(left) and _is_int(right) and right > 0:
                _check_bits(max(left.bit_length(), 1) * right)
            elif isinstance(right, int | float) and abs(right) > MAX_POWER_BITS:
                _check_bits(MAX_POWER_BITS + 1)
        elif operator_ == "*":
            if _is_int(left) and _is_int(right):
                _check_bits(left.bit_length() + right.bit_length())
            for sized, count in ((left, right), (right, left)):
                if isinstance(count, int | float) and not isinstance(count, bool):
                    # A float count fails in Python, unless it is too large: say so instead.
                    if isinstance(sized, str | bytes) and len(sized) * count > MAX_OUTPUT_CHARS:
                        raise _text_too_long()
                    if isinstance(sized, list | tuple) and len(sized) * count > MAX_ITEMS:
                        _check_items(MAX_ITEMS + 1)
        elif operator_ == "+":
            if isinstance(left, str | bytes) and isinstance(right, str | bytes):
                _check_chars(len(left) + len(right))
            elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
                _check_items(len(left) + len(right))
        elif operator_ == "%" and isinstance(left, str | bytes):
            _check_chars(_percent_length(left, right))
        _weigh(left, right)
        return _checked(self.binop_table[operator_](left, right))

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, str | bytes | int) and not isinstance(owner, bool):
            args = _prepare_method(owner, getattr(obj, "__name__", ""), args, kwargs)
        _weigh(owner, *args, *kwargs.values())
        return _checked(super().call(context, obj, *args, **kwargs))

    def getitem(self, obj: Any, argument: Any) -> Any:
        value = super().getitem(obj, argument)
        return _checked(value) if isinstance(argument, slice) else value

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # Jinja's own, with formatters that measure each field before writing it.
        if not isinstance(value, types.MethodType | types.BuiltinMethodType):
            return None
        if value.__name__ not in ("format", "format_map") or not isinstance(value.__self__, str):
            return None
        template: str = value.__self__
        is_format_map = value.__name__ == "format_map"
        formatter = (
            _CappedEscapeFormatter(self, escape=template.escape)
            if isinstance(template, Markup)
            else _CappedFormatter(self)
        )

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs, args = args[0], ()
            return _checked(type(template)(formatter.vformat(template, args, kwargs)))

        return functools.update_wrapper(wrapper, value)


def _prepare_method(
    owner: str | bytes | int, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> tuple[Any, ...]:
    """Refuse a call of ``owner.name(*args, **kwargs)`` whose result would be too large, before
    it is made; the arguments to call it with (a ``join``'s items, read once)."""
    _argument_limits(name, args, kwargs)
    if isinstance(owner, int):
        return args
    if name == "expandtabs":
        tab_size = _argument(args, kwargs, 0, "tabsize")
        if _is_int(tab_size) and tab_size > 0:
            tabs = owner.count(b"\t" if isinstance(owner, bytes) else "\t")  # type: ignore[arg-type]
            _check_chars(len(owner) + tabs * tab_size)
    elif name == "replace" and len(args) >= 2:
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        _check_chars(_replaced_length(owner, args[0], args[1], count))
    elif name == "join" and args:
        items = list(_bounded(args[0]))
        length = len(owner) * max(len(items) - 1, 0)
        for item in items:
            length += _text_bound(item, MAX_OUTPUT_CHARS - length)
            _check_chars(length)
        return (items, *args[1:])
    elif name == "translate" and args:
        table = args[0]
        values = table.values() if isinstance(table, Mapping) else table
        longest = 1
        if isinstance(values, Collection) and not isinstance(values, str | bytes):
            longest = max([1, *(_text_bound(v) for v in values if isinstance(v, str))])
        _check_chars(len(owner) * longest)
    elif name in ("split", "rsplit"):
        separator = _argument(args, kwargs, 0, "sep")
        most = _argument(args, kwargs, 1, "maxsplit")
        if not (_is_int(most) and 0 <= most < MAX_ITEMS):
            if separator is None:
                _check_items(_word_count(owner))
            elif isinstance(separator, str | bytes) and separator:
                _check_items(owner.count(separator) + 1)  # type: ignore[arg-type]
    elif name == "splitlines":
        _check_items(_line_count(owner))
    return args


def _make_environment(*, autoescape: bool) -> _Sandbox:
    environment = _Sandbox(autoescape=autoescape, undefined=_MissingValue, finalize=_finalize)
    # No globals at all: every value a template sees is one the caller offered. See
    # RESERVED_NAMES for why each default global is gone.
    environment.globals.clear()
    environment.filters = {
        name: _capped_filter(name, function) for name, function in environment.filters.items()
    }
    environment.filters.update({_LOOP: _loop_items, _CONCAT: _concat, _WEIGH: _weighed})
    environment.tests = {
        name: _capped_test(name, test)  # type: ignore[arg-type]
        for name, test in environment.tests.items()
    }
    return environment


_HTML_ENVIRONMENT = _make_environment(autoescape=True)
_TEXT_ENVIRONMENT = _make_environment(autoescape=False)
