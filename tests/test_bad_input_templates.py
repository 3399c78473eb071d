"""Bad input: templates that would compute too much (issue "Trust", template resource limits).

Every value a template computes is capped, not only the text it writes: a template that would
build a huge text, list or number on the way is refused quickly, without building it, with its
line. What needs no value to be worked out is refused when the template is saved, so it never
reaches a rep's Apply. Ordinary templates are not affected.
"""

from __future__ import annotations

import re
import time
import tracemalloc
from html import unescape

import pytest
import sqlalchemy as sa
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engage.models import EmailTemplate
from engage.templating import (
    MAX_ITEMS,
    MAX_OUTPUT_CHARS,
    TemplateRefused,
    check_syntax,
    render_template_text,
)
from tests.hostapp import db
from tests.support import sign_in

VALUES = {
    "recipient": {"first_name": "Ada", "name": "Ada Lovelace", "email": "ada@example.com"},
    "regarding": {"name": "Engine upgrade"},
    "order_number": "10042",
}

TEXT = f"{MAX_OUTPUT_CHARS:,} characters"
ITEMS = f"{MAX_ITEMS:,} items"
BITS = "4096 bits"
PRIVATE = "names starting with '_'"
WORK = "steps of work"

#: Templates refused without any value, each with what its refusal says. Each is the third
#: line of the template it is tried in.
STATIC = [
    pytest.param("{{ ('x'*1000)|replace('x','x'*20000) }}", TEXT, id="replace"),
    pytest.param(
        "{{ ('x'*1000)|replace('x','x'*1000)|replace('x','x'*1000) }}", TEXT, id="replace-twice"
    ),
    pytest.param("{{ ('x'*1000).replace('x','x'*20000) }}", TEXT, id="str.replace"),
    pytest.param("{{ ''|center(30000000) }}", TEXT, id="center"),
    pytest.param("{{ recipient.first_name|center(30000000) }}", TEXT, id="center-of-a-value"),
    pytest.param("{{ recipient.first_name.center(30000000) }}", TEXT, id="str.center"),
    pytest.param("{{ recipient.first_name.ljust(30000000) }}", TEXT, id="str.ljust"),
    pytest.param("{{ recipient.first_name.rjust(30000000) }}", TEXT, id="str.rjust"),
    pytest.param("{{ order_number.zfill(30000000) }}", TEXT, id="str.zfill"),
    pytest.param("{{ ('\\t' * 1000).expandtabs(100000) }}", TEXT, id="str.expandtabs"),
    pytest.param("{{ 'abc'.translate({97: 'x' * 1000000}) }}", TEXT, id="str.translate"),
    pytest.param("{{ recipient|attr('__class__') }}", PRIVATE, id="attr-dunder"),
    pytest.param('{{ recipient|attr("_x") }}', PRIVATE, id="attr-private"),
    pytest.param("{{ recipient|attr(name='__class__') }}", PRIVATE, id="attr-keyword"),
    pytest.param("{{ recipient|attr('_' ~ '_class__') }}", PRIVATE, id="attr-concat"),
    pytest.param("{{ recipient['_' ~ '_class__'] }}", PRIVATE, id="getitem-concat"),
    pytest.param("{{ [recipient]|map(attribute='__class__')|list }}", PRIVATE, id="map-attr"),
    pytest.param("{{ [recipient]|selectattr('_x')|list }}", PRIVATE, id="selectattr"),
    pytest.param("{{ '{0.__class__}'.format(recipient) }}", PRIVATE, id="format-field"),
    pytest.param("{{ 9**(9**9) }}", BITS, id="power"),
    pytest.param("{{ (2**4000) * (2**4000) }}", BITS, id="product"),
    pytest.param("{{ 'x'*1e8 }}", TEXT, id="text-times-float"),
    pytest.param("{{ 'x'*100000000 }}", TEXT, id="text-times-int"),
    pytest.param("{{ [0]*100000000 }}", ITEMS, id="list-times-int"),
    pytest.param("{{ ('x'*999999) + ('y'*999999) }}", TEXT, id="plus"),
    pytest.param("{{ ('x'*999999) ~ ('y'*999999) }}", TEXT, id="tilde"),
    pytest.param("{{ '%30000000s' % recipient.first_name }}", TEXT, id="percent"),
    pytest.param("{{ '%30000000s'|format(recipient.first_name) }}", TEXT, id="format-filter"),
    pytest.param("{{ '{:30000000}'.format(recipient.first_name) }}", TEXT, id="str.format"),
    pytest.param("{{ '{:>{w}}'.format('a', w=30000000) }}", TEXT, id="str.format-nested"),
    pytest.param("{{ ('x'*2000)|join('y'*1000) }}", TEXT, id="join"),
    pytest.param("{{ ('x'*999999)|wordwrap(1) }}", TEXT, id="wordwrap"),
    pytest.param("{{ recipient.name|indent(100000000) }}", TEXT, id="indent"),
    pytest.param("{{ ('a '*5000)|urlize(target='y'*1000) }}", TEXT, id="urlize"),
    pytest.param("{{ recipient|tojson(indent=100000000) }}", TEXT, id="tojson"),
    pytest.param("{{ ('<'*999999)|e }}", TEXT, id="escape"),
    pytest.param("{{ (1).to_bytes(100000000, 'big') }}", TEXT, id="int.to_bytes"),
    pytest.param("{{ [1]|batch(100000000, 'x')|list }}", ITEMS, id="batch"),
    pytest.param("{{ [1]|slice(100000000)|list }}", ITEMS, id="slice"),
    pytest.param("{{ ('x'*20000)|list }}", ITEMS, id="list"),
    pytest.param("{{ ('x '*20000).split() }}", ITEMS, id="str.split"),
    pytest.param("{% for c in 'x'*20000 %}{{ c }}{% endfor %}", "a loop would go round", id="loop"),
    pytest.param("{{ " + "(" * 500 + "1" + ")" * 500 + " }}", "levels deep", id="nesting"),
    pytest.param("{{ " + "9" * 5000 + " }}", "too many digits", id="long-number"),
]

#: Templates that can only be refused with their values: (template, values, what is said).
#: Each offending part is on the third line.
S, N, BIG = "x" * 1000, 20000, 30000000
RUNTIME_VALUES = {"s": S, "n": N, "big": BIG, "tabs": "\t" * 1000, "one": 1, "pct": "%"}
SHARED = "{% set l = [s*999] * 10000 %}"  # ten thousand times the same long text
#: Two equal lists, each ten lists of ten lists … eight levels deep: 10 ** 8 items to compare.
NESTED = "{% set a = [s] %}{% set b = [s ~ ''] %}" + 8 * (
    "{% set a = [" + ", ".join(["a"] * 10) + "] %}{% set b = [" + ", ".join(["b"] * 10) + "] %}"
)
RUNTIME = [
    pytest.param("{{ s|replace('x', 'x'*n) }}", TEXT, id="replace"),
    pytest.param("{{ s|replace('x', s)|replace('x', s) }}", TEXT, id="replace-twice"),
    pytest.param("{{ s.replace('x', s*20) }}", TEXT, id="str.replace"),
    pytest.param("{{ s|center(big) }}", TEXT, id="center"),
    pytest.param("{{ s.ljust(big) }}", TEXT, id="str.ljust"),
    pytest.param("{{ tabs.expandtabs(n) }}", TEXT, id="str.expandtabs"),
    pytest.param("{{ s*n }}", TEXT, id="text-times"),
    pytest.param("{{ [s]*n }}", ITEMS, id="list-times"),
    pytest.param("{{ (pct ~ big ~ 's') % s }}", TEXT, id="percent"),
    pytest.param("{{ (pct ~ big ~ 's')|format(s) }}", TEXT, id="format-filter"),
    pytest.param("{{ ('{:' ~ big ~ '}').format(s) }}", TEXT, id="str.format"),
    pytest.param("{{ s.join([s*999]*100) }}", TEXT, id="str.join"),
    pytest.param("{{ one.to_bytes(big, 'big') }}", TEXT, id="int.to_bytes"),
    pytest.param("{{ [1]|slice(big)|list }}", ITEMS, id="slice"),
    pytest.param("{{ [s]|map('center', big)|list }}", TEXT, id="map-center"),
    pytest.param(SHARED + "{{ l }}", TEXT, id="write-shared-list"),
    pytest.param(SHARED + "{{ l|join }}", TEXT, id="join-shared-list"),
    pytest.param(SHARED + "{{ l ~ '' }}", TEXT, id="tilde-shared-list"),
    pytest.param(SHARED + "{{ l|string }}", TEXT, id="string-shared-list"),
    pytest.param(SHARED + "{{ l|tojson }}", TEXT, id="tojson-shared-list"),
    pytest.param(SHARED + "{{ l|pprint }}", TEXT, id="pprint-shared-list"),
    pytest.param(SHARED + "{{ l|sort|length }}", WORK, id="sort-shared-list"),
    pytest.param(NESTED + "{{ a == b }}", WORK, id="compare-nested-lists"),
    pytest.param(NESTED + "{{ a.count(b) }}", WORK, id="count-nested-lists"),
    pytest.param(NESTED + "{{ [a, b]|unique|list }}", WORK, id="unique-nested-lists"),
    pytest.param("{{ (s*999)|max }}", ITEMS, id="max-of-a-long-text"),
    pytest.param(
        "{% set a = s*999 %}{% set b = a ~ '' %}{% for i in [0]*10000 %}"
        "{% if a == b %}{% endif %}{% endfor %}",
        WORK,
        id="compare-in-a-loop",
    ),
    pytest.param("{% for c in s*20 %}{% endfor %}", "a loop would go round", id="loop"),
    pytest.param(
        "{% set x %}{% for i in [0]*10000 %}{{ s*999 }}{% endfor %}{% endset %}{{ x|length }}",
        WORK,
        id="set-block",
    ),
    pytest.param(
        "{% filter upper %}{% for i in [0]*10000 %}{{ s*999 }}{% endfor %}{% endfilter %}",
        WORK,
        id="filter-block",
    ),
    pytest.param("{% for i in [0]*9000 %}{% set y = (s*999)[1:] %}{% endfor %}", WORK, id="slices"),
]

#: Ordinary templates, which save and render as Jinja's own sandbox renders them.
ORDINARY = [
    'Hi {{ recipient.first_name | default("there") }}, {{ nobody | default("you") }}',
    "{% if order_number %}Order {{ order_number }}{% else %}No order{% endif %}",
    "{% for key, value in recipient|dictsort %}{{ key }}={{ value }};{% endfor %}",
    '{% for n in ["a", "b"] %}{{ loop.index }}:{{ n|upper }}{% if not loop.last %}, {% endif %}'
    "{% endfor %}",
    "{{ recipient.name|upper }} {{ recipient.name|lower }} {{ regarding.name|title }}",
    '{{ recipient.email|replace("@", " at ") }} {{ recipient.name.replace("a", "4") }}',
    '{{ ["a", "b", recipient.first_name]|join(", ") }} {{ ", ".join(["c", "d"]) }}',
    '{{ recipient.name ~ " <" ~ recipient.email ~ ">" }}',
    '{{ "%s, order %s"|format(recipient.first_name, order_number) }} {{ "%05d" % 42 }}',
    '{{ "{} ({})".format(recipient.name, order_number) }} {{ "{:>8}".format("x") }}',
    "{{ recipient.name|truncate(9) }} {{ recipient.name|wordcount }} {{ recipient.name|length }}",
    "[{{ regarding.name|center(20) }}] {{ (recipient.name ~ ' ')|wordwrap(5) }}",
    "{% set greeting %}Dear {{ recipient.first_name }}{% endset %}{{ greeting|trim }}",
    "{% filter upper %}hello {{ recipient.first_name }}{% endfilter %}",
    '{{ 2 ** 10 }} {{ 3 * 4 }} {{ "ab" * 3 }} {{ [1, 2] * 2 }} {{ 7 % 3 }} {{ "a" + "b" }}',
    "{{ recipient|tojson }} {{ recipient.name|indent(2, true) }}",
    '{% if recipient.first_name == "Ada" and "Love" in recipient.name %}yes{% endif %}',
    '{{ recipient.name.split(" ")|first }} {{ recipient.name.split()|last }}',
    "{{ [3, 1, 2]|sort|join }} {{ [1, 1, 2]|unique|list|length }} {{ [1, 2, 3]|batch(2)|list }}",
    "{{ [1, 2, 3]|slice(2)|list }} {{ recipient.name[:3] }} {{ (order_number|int) + 1 }}",
    "{{ [recipient]|map(attribute='first_name')|join }} {{ recipient.name|list|length }}",
]


def _template(snippet: str) -> str:
    return f"Hello,\nthank you.\n{snippet}\n"


def _refusal_of(source: str, values: dict[str, object]) -> tuple[str, float, float]:
    """What rendering ``source`` is refused with, in how many seconds, and its peak memory in
    megabytes."""
    started = time.perf_counter()
    with pytest.raises(TemplateRefused) as caught:
        render_template_text(source, values, html=True)
    elapsed = time.perf_counter() - started
    tracemalloc.start()
    try:
        with pytest.raises(TemplateRefused):
            render_template_text(source, values, html=False)
        peak = tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()
    return str(caught.value), elapsed, peak


# ---- refused on save -------------------------------------------------------------------------


@pytest.mark.parametrize(("snippet", "words"), STATIC)
def test_a_template_that_would_compute_too_much_is_refused_on_save(snippet, words):
    [problem] = check_syntax(_template(snippet))
    assert problem.line == 3
    assert words in problem.message


@pytest.mark.parametrize(("snippet", "words"), STATIC)
def test_it_is_refused_as_quickly_when_rendered(snippet, words):
    message, seconds, megabytes = _refusal_of(_template(snippet), VALUES)
    assert message.startswith("Line 3: ") and words in message
    assert seconds < 1
    assert megabytes < 32


# ---- refused while rendering -----------------------------------------------------------------


@pytest.mark.parametrize(("snippet", "words"), RUNTIME)
def test_a_template_that_would_compute_too_much_with_its_values_is_refused_quickly(snippet, words):
    source = _template(snippet)
    assert check_syntax(source) == []  # it depends on the values
    message, seconds, megabytes = _refusal_of(source, RUNTIME_VALUES)
    assert message.startswith("Line 3: ") and words in message
    assert seconds < 1
    assert megabytes < 32


def test_the_worst_cases_before_the_limits_are_refused_without_building_anything():
    # Before, each built its result in full: 20 MB, 30 MB, and a gigabyte for the last two.
    for snippet in (
        "{{ s|replace('x', 'x'*n) }}",
        "{{ '' | center(big) }}",
        "{{ ('%' ~ big ~ big ~ 's') % s }}",
        "{{ ('{:' ~ big ~ big ~ '}').format(s) }}",
    ):
        message, seconds, megabytes = _refusal_of(_template(snippet), RUNTIME_VALUES)
        assert TEXT in message
        assert seconds < 0.5
        assert megabytes < 2


def test_values_at_the_limits_are_computed():
    values = {"s": "x" * 1000}
    assert len(render_template_text("{{ s*1000 }}", values, html=False).text) == 1_000_000
    text = render_template_text("{{ s|replace('x', s) }}", values, html=False).text
    assert len(text) == 1_000_000
    assert render_template_text("{{ ([0]*10000)|length }}", values, html=False).text == "10000"
    source = "{% for i in [0]*10000 %}{% endfor %}{{ (2**2000 * 2**2000)|string|length }}"
    assert render_template_text(source, values, html=False).text == str(len(str(2**4000)))


# ---- ordinary templates ----------------------------------------------------------------------


@pytest.mark.parametrize("source", ORDINARY)
@pytest.mark.parametrize("html", [True, False])
def test_an_ordinary_template_saves_and_renders_as_jinja_renders_it(source, html):
    assert check_syntax(source) == []
    plain = ImmutableSandboxedEnvironment(autoescape=html).from_string(source).render(VALUES)
    assert render_template_text(source, VALUES, html=html).text == plain


# ---- through the managers' pages -------------------------------------------------------------

TEMPLATES = "/crm/engage/templates"


def _save(client, body: str):
    page = client.get(TEMPLATES + "/new").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]* value="([^"]+)"', page).group(1)
    return client.post(
        TEMPLATES + "/new",
        data={
            "csrf_token": token,
            "name": "Limits",
            "language": "en",
            "category": "Follow-up",
            "subject": "Hello {{ recipient.first_name }}",
            "body": body,
            "body_format": "html",
            "action": "save",
        },
    )


def _saved(app) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(EmailTemplate))


@pytest.mark.parametrize(("snippet", "words"), STATIC)
def test_a_manager_saving_such_a_template_is_shown_the_line_and_nothing_is_saved(
    app, snippet, words
):
    mia = sign_in(app.test_client(), 3)
    response = _save(mia, f"<div>Hello,</div><div>thank you.</div><div>{snippet}</div>")
    assert response.status_code == 422
    page = unescape(response.get_data(as_text=True))
    assert re.search(r"Line 3: [^<]*" + re.escape(words), page), page
    assert _saved(app) == 0


def test_a_manager_saves_an_ordinary_template(app):
    mia = sign_in(app.test_client(), 3)
    body = "".join(f"<div>{source}</div>" for source in ORDINARY)
    assert _save(mia, body).status_code == 302
    assert _saved(app) == 1
