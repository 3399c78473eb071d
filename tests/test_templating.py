"""The rendering core of email templates: values, escaping, missing values, the sandbox."""

from __future__ import annotations

import pytest

from engage.records import PostalAddress, Record, RecordRef
from engage.templating import (
    FIELDS,
    MAX_TEMPLATE_BYTES,
    Rendered,
    SyntaxProblem,
    TemplateBroken,
    TemplateRefused,
    check_syntax,
    render_template_text,
    values_for,
)

ADA = Record(
    ref=RecordRef("contact", "7"),
    name="Ada Lovelace",
    url="/contacts/7",
    first_name="Ada",
    email="ada@example.com",
    address=PostalAddress(city="London", country="GB"),
    type_label="Contact",
)
DEAL = Record(ref=RecordRef("opportunity", "3"), name="Engine upgrade", url="/opps/3")
VALUES = values_for(ADA, DEAL, {"order_number": "10042"})


@pytest.mark.parametrize(
    ("source", "text"),
    [
        ("Hello {{ recipient.first_name }}", "Hello Ada"),
        ("{{ recipient.name }} <{{ recipient.email }}>", "Ada Lovelace <ada@example.com>"),
        (
            "Re: {{ regarding.name }} ({{ regarding.type_label }})",
            "Re: Engine upgrade (Opportunity)",
        ),
        ("Order {{ order_number }}", "Order 10042"),
        ("{{ recipient.city }}, {{ recipient.country }}", "London, GB"),
        ("{{ recipient.first_name | upper }}", "ADA"),
        ("{% if order_number %}#{{ order_number }}{% endif %}", "#10042"),
    ],
)
def test_a_template_is_filled_in_with_the_values(source: str, text: str) -> None:
    assert render_template_text(source, VALUES, html=False) == Rendered(text, ())


def test_values_are_html_escaped_in_a_body() -> None:
    values = {"recipient": {"first_name": "<script>alert(1)</script>"}}
    rendered = render_template_text("<p>Hi {{ recipient.first_name }}</p>", values, html=True)
    assert rendered.text == "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;</p>"


def test_values_are_not_escaped_in_a_subject() -> None:
    values = {"recipient": {"first_name": "Tom & <Jerry>"}}
    rendered = render_template_text("For {{ recipient.first_name }}", values, html=False)
    assert rendered.text == "For Tom & <Jerry>"


@pytest.mark.parametrize("html", [True, False])
def test_missing_values_render_empty_and_are_reported(html: bool) -> None:
    source = "Hi {{ recipient.first_name }}, re {{ regarding.name }} #{{ order_number }}"
    rendered = render_template_text(source, {"recipient": {"name": "Ada"}}, html=html)
    assert rendered.text == "Hi , re  #"
    assert rendered.missing == ("recipient.first_name", "regarding.name", "order_number")


def test_a_missing_value_is_reported_once() -> None:
    source = "{{ order_number }} {{ order_number }}"
    assert render_template_text(source, {}, html=False).missing == ("order_number",)


@pytest.mark.parametrize(
    "source",
    [
        'Hi {{ recipient.first_name | default("there") }}',
        "Hi {{ recipient.first_name or 'there' }}",
        "Hi {% if recipient.first_name %}{{ recipient.first_name }}{% else %}there{% endif %}",
    ],
)
def test_a_missing_value_with_a_default_is_not_reported(source: str) -> None:
    rendered = render_template_text(source, values_for(None, None), html=True)
    assert rendered == Rendered("Hi there", ())


def test_a_default_is_not_used_when_the_value_is_there() -> None:
    source = 'Hi {{ recipient.first_name | default("there") }}'
    assert render_template_text(source, VALUES, html=True).text == "Hi Ada"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ recipient.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ config }}",
        "{{ config.items() }}",
        "{{ self }}",
        "{{ self._TemplateReference__context }}",
        "{{ lipsum.__globals__ }}",
        "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
        "{{ range(10**9)|list }}",
        "{{ joiner() }}{{ namespace(a=1) }}",
        "{{ dict(a=1) }}",
        '{{ "{0.__class__}".format(recipient) }}',
        '{{ "{0.__class__.__init__}".format(order_number) }}',
        '{{ "{x.__class__}".format_map({"x": 1}) }}',
        '{{ recipient["__class__"] }}',
        '{{ recipient["_" ~ "_class__"] }}',
        '{{ recipient | attr("__class__") }}',
        '{{ recipient | attr("_" ~ "_class__") }}',
        "{{ [recipient] | map(attribute='__class__') | list }}",
        "{{ recipient.first_name._secret }}",
        "{{ 2 ** 100000 }}",
        "{{ 10 ** (10 ** 10) }}",
        '{{ "x" * 10 ** 8 }}',
        "{{ [1] * 10 ** 8 }}",
        '{% include "secret.html" %}',
        '{% import "macros.html" as m %}',
        '{% extends "base.html" %}',
    ],
)
@pytest.mark.parametrize("html", [True, False])
def test_a_sandbox_escape_is_refused(source: str, html: bool) -> None:
    with pytest.raises(TemplateRefused) as caught:
        render_template_text(source, VALUES, html=html)
    assert str(caught.value)


def test_a_refusal_message_says_what_is_not_allowed() -> None:
    with pytest.raises(TemplateRefused, match="'config' is not available"):
        render_template_text("Hi\n{{ config }}", VALUES, html=True)
    with pytest.raises(TemplateRefused, match="__class__"):
        render_template_text('{{ recipient["_" ~ "_class__"] }}', VALUES, html=True)


def test_an_oversized_template_is_refused() -> None:
    source = "x" * (MAX_TEMPLATE_BYTES + 1)
    with pytest.raises(TemplateRefused, match="longer than 100 KB"):
        render_template_text(source, VALUES, html=True)
    assert check_syntax(source)[0].line == 1


def test_a_template_at_the_size_limit_is_accepted() -> None:
    source = "x" * MAX_TEMPLATE_BYTES
    assert render_template_text(source, VALUES, html=False).text == source


def test_too_much_output_is_refused() -> None:
    source = "{% for a in x %}" + "y" * 2000 + "{% endfor %}"
    with pytest.raises(TemplateRefused, match="too much text"):
        render_template_text(source, {"x": list(range(1000))}, html=False)


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("{% for a in x %}\n{% for b in x %}{% endfor %}{% endfor %}", "loop cannot contain"),
        ("{% for a in x recursive %}{{ loop(a) }}{% endfor %}", "recursive loops"),
        ("{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}", "macros"),
        ("{% call(x) cycle() %}{% endcall %}", "macros"),
    ],
)
def test_constructs_that_could_run_for_ages_are_refused(source: str, words: str) -> None:
    [problem] = check_syntax(source)
    assert problem.line == 1 and words in problem.message
    with pytest.raises(TemplateRefused, match=words):
        render_template_text(source, {"x": [1, 2]}, html=False)


@pytest.mark.parametrize(
    ("source", "line", "words"),
    [
        ("Hello,\n\n{{ recipient.first_name\nThanks", 3, "closed with }}"),
        ("Hello,\n{% if recipient.first_name %}\nHi\n\nBye", 2, "endif"),
        ("{% if a %}\n{% if b %}\nx\n{% endif %}", 1, "endif"),
        ("a\n\n\n{{ order_number + }}", 4, "ends too early"),
        ("a\n{% endfor %}", 2, "endfor"),
        ("a\n{% frobnicate %}", 2, "frobnicate"),
        ("a\n{% set x %}b\n", 2, "endset"),
    ],
)
def test_a_syntax_error_is_reported_with_its_line(source: str, line: int, words: str) -> None:
    [problem] = check_syntax(source)
    assert problem.line == line
    assert words in problem.message
    with pytest.raises(TemplateBroken) as caught:
        render_template_text(source, VALUES, html=True)
    assert caught.value.line == line


def test_a_refused_construct_is_a_problem_on_save() -> None:
    assert check_syntax("Hi\n\n{{ recipient.__class__ }}") == [
        SyntaxProblem(3, "names starting with '_' ('__class__') cannot be used")
    ]


@pytest.mark.parametrize(
    "source",
    [
        "",
        "Plain text, no values.",
        'Hi {{ recipient.first_name | default("there") }},\n{{ regarding.name }}',
        "{% for i in [1, 2] %}{{ loop.index }}{% endfor %}{% set x = 1 %}{{ x }}",
        "{% set body %}b{% endset %}{{ body }}",
        "{% for i in [1, 2] %}{% if loop.first %}{{ i }}{% endif %}{% endfor %}",
    ],
)
def test_a_valid_template_has_no_problems(source: str) -> None:
    assert check_syntax(source) == []


def test_check_syntax_does_not_render() -> None:
    assert check_syntax("{{ 1 / 0 }}{{ missing + 1 }}") == []


@pytest.mark.parametrize("source", ["{{ 1 / 0 }}", "{{ order_number + 1 }}", "{{ nothing() }}"])
def test_an_error_while_rendering_is_reported(source: str) -> None:
    with pytest.raises(TemplateBroken, match="could not be filled in"):
        render_template_text(source, {"order_number": "10042"}, html=False)


def test_values_for_a_recipient_and_a_regarding_record() -> None:
    assert VALUES == {
        "recipient": {
            "first_name": "Ada",
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "city": "London",
            "country": "GB",
            "type_label": "Contact",
        },
        "regarding": {"name": "Engine upgrade", "type_label": "Opportunity"},
        "order_number": "10042",
    }


def test_values_for_no_records_offers_only_the_extra_values() -> None:
    assert values_for(None, None) == {}
    assert values_for(None, None, {"order_number": "1"}) == {"order_number": "1"}


def test_values_for_leaves_out_empty_fields_so_defaults_apply() -> None:
    bare = Record(ref=RecordRef("lead", "1"), name="Bob", url="/leads/1")
    values = values_for(bare, None, {"order_number": ""})
    assert values == {"recipient": {"name": "Bob", "type_label": "Lead"}}
    source = '{{ recipient.first_name | default("there") }} {{ recipient.city }}'
    assert render_template_text(source, values, html=True) == Rendered(
        "there ", ("recipient.city",)
    )


@pytest.mark.parametrize("name", ["recipient", "regarding", "_x", "order number", "config"])
def test_values_for_refuses_an_extra_name_that_cannot_be_used(name: str) -> None:
    with pytest.raises(ValueError):
        values_for(ADA, None, {name: "x"})


def test_every_field_renders_from_values_for() -> None:
    for field in FIELDS:
        rendered = render_template_text(field.snippet, VALUES, html=False)
        assert rendered.missing == ()
        assert rendered.text
