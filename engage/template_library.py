"""Email templates as reps and managers use them (SPEC S29–S32): finding, suggesting, previewing,
applying to a draft, and keeping them.

The sandboxed rendering is :mod:`engage.templating`'s, the figures
:mod:`engage.template_performance`'s; the pages are :mod:`engage.web.templates`, and the
compose panel's Insert template window is part of :mod:`engage.web.compose`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from babel import Locale, UnknownLocaleError
from flask import current_app
from markupsafe import Markup
from sqlalchemy.orm import Session

from .content import clean_html, html_to_text, parse_addresses
from .context import current_engage
from .i18n import gettext as _
from .i18n import locale_tag
from .ids import parse_id
from .models import EmailTemplate, utcnow
from .records import Record, RecordRef
from .template_performance import MEASURES, Performance, best_templates
from .templating import (
    FIELDS,
    Rendered,
    TemplateBroken,
    TemplateRefused,
    check_syntax,
    render_template_text,
    values_for,
)

#: The most recipients whose values are compared with the first's when a template is applied.
COMPARED_RECIPIENTS = 20


def language_name(code: str) -> str:
    """A language's name in the user's language (``"de"`` → ``"German"`` for English)."""
    return _language_name(code, locale_tag())


def language_namer() -> Any:
    """:func:`language_name` for one page: the user's language is looked up once."""
    locale = locale_tag()
    return lambda code: _language_name(code, locale)


@functools.lru_cache(maxsize=512)
def _language_name(code: str, locale: str) -> str:
    # Cached: the window names the language of each of up to hundreds of templates.
    try:
        name = Locale.parse(code).get_display_name(Locale.parse(locale, sep="-"))
    except (UnknownLocaleError, ValueError):
        return code
    return (name or code)[:1].upper() + (name or code)[1:]


def languages() -> list[str]:
    """The languages templates are written in (``ENGAGE_TEMPLATE_LANGUAGES``)."""
    return [str(code) for code in current_app.config["ENGAGE_TEMPLATE_LANGUAGES"]]


def field_label(name: str) -> str:
    """A dynamic value's label for the user (``Recipient's first name``)."""
    for template_field in FIELDS:
        if template_field.name == name:
            return _(template_field.label)
    return name


def default_user_language() -> str:
    """A new template's language: the user's, when templates are written in it."""
    language = _primary_language(locale_tag())
    offered = languages()
    return language if language in offered or not offered else offered[0]


def _primary_language(tag: str) -> str:
    # "de-AT", "de_AT" and "DE" are all German, as templates are kept per language.
    return tag.replace("_", "-").split("-")[0].lower()


#: Closing tags after which the rich editor's HTML starts a new line for the writer.
_LINE_END = re.compile(r"(<br\s*/?>|</(?:div|p|li|h[1-6]|blockquote|pre)>)(?!\n)", re.IGNORECASE)


def _as_lines(html: str) -> str:
    # Trix writes the whole body on one line; break it where the writer sees a new line so
    # that a syntax error is reported on the line they can find.
    return _LINE_END.sub("\\1\n", html)


def syntax_problems(subject: str, body_html: str) -> dict[str, str]:
    """The first syntax problem of the subject and of the body, by field, with its line."""
    problems: dict[str, str] = {}
    for name, source in (("subject", subject), ("body", body_html)):
        found = check_syntax(_as_lines(source) if name == "body" else source)
        if found:
            first = found[0]
            problems[name] = _(
                "Line %(line)s: %(message)s. Nothing was saved; fix it and save again.",
                line=first.line,
                message=first.message.rstrip("."),
            )
    return problems


@dataclass
class Preview:
    """A template filled in for one record, for the editor's preview."""

    record: Record | None
    subject: str = ""
    body: Markup = Markup("")
    missing: list[str] = field(default_factory=list)
    error: str | None = None


def record_of(ref_text: str | None) -> Record | None:
    """The record a form names as ``type:id``, or ``None`` when it names none or no such one."""
    if not ref_text:
        return None
    try:
        return current_engage.records.get(RecordRef.parse(ref_text))
    except ValueError:
        return None


def preview(
    record: Record | None, subject_text: str, body_html: str, problems: dict[str, str]
) -> Preview:
    """The template's subject and body filled in for ``record``, for the editor's preview."""
    preview = Preview(record=record)
    if problems:
        preview.error = _("Fix the marked problems to see the preview.")
        return preview
    values = values_for(record, record, _extra_values(record, record))
    try:
        subject = render_template_text(subject_text, values, html=False)
        body = render_template_text(body_html, values, html=True)
    except (TemplateBroken, TemplateRefused) as exc:
        preview.error = str(exc)
        return preview
    preview.subject = subject.text
    preview.body = Markup(clean_html(body.text))
    preview.missing = [field_label(n) for n in dict.fromkeys(subject.missing + body.missing)]
    return preview


def _extra_values(recipient: Record | None, regarding: Record | None) -> dict[str, str]:
    extra: dict[str, str] = {}
    for record in (recipient, regarding):
        if record is not None:
            extra.update(record.template_values)
    return extra


def matching(templates: Sequence[EmailTemplate], query: str) -> list[EmailTemplate]:
    """The templates whose name, category, subject or text hold every word of ``query``,
    case-insensitively (in Python, so that ``ä`` matches ``Ä`` on every database)."""
    words = query.casefold().split()
    if not words:
        return list(templates)
    found = []
    for template in templates:
        haystack = " ".join(
            (template.name, template.category, template.subject, template.text_body)
        ).casefold()
        if all(word in haystack for word in words):
            found.append(template)
    return found


#: The measure a suggestion is made for first: a sale says most, an open least.
SUGGESTION_ORDER = ("sales", "replies", "opens")


@dataclass
class Choices:
    """What the Insert template window lists."""

    language: str
    query: str
    templates: list[EmailTemplate]
    performance: dict[int, Performance]
    best: dict[int, list[str]]
    total: int

    @property
    def suggestion(self) -> tuple[EmailTemplate, str] | None:
        """The template to suggest before the window is opened, and what it is best for."""
        for measure in SUGGESTION_ORDER:
            for template in self.templates:
                if measure in self.best.get(template.id, ()):
                    return template, measure
        return None


def choices(language: str, query: str) -> Choices:
    """The active templates in ``language`` (``""`` for all) matching ``query``, best first.

    The search looks at the name, category, subject and text, case-insensitively. The best
    template for each measure is chosen among every active template of the language, not only
    the matches, so a search does not crown a template that is best of two.
    """
    statement = sa.select(EmailTemplate).where(EmailTemplate.retired_at.is_(None))
    if language:
        statement = statement.where(EmailTemplate.language == language)
    every = list(current_engage.session.scalars(statement.order_by(EmailTemplate.name)))
    best_for: dict[int, list[str]] = {}
    for measure, template_id in best_templates(every).items():
        best_for.setdefault(template_id, []).append(measure)
    every_match = matching(every, query)
    listed = sorted(every_match, key=lambda t: (t.id not in best_for, t.name.casefold()))
    return Choices(
        language=language,
        query=query,
        templates=listed,
        performance={t.id: Performance.of(t) for t in listed},
        best=best_for,
        total=len(every),
    )


#: A value in a template's text, with an optional filter: ``{{ recipient.first_name | … }}``.
_VALUE = re.compile(r"\{\{-?\s*([A-Za-z_][\w.]*)[^}]*\}\}")
_STATEMENT = re.compile(r"\{%.*?%\}", re.DOTALL)


def excerpter(length: int = 140) -> Any:
    """A function giving the start of a template's text for reps: each value by its label
    (``[Recipient's first name]``), statements left out.

    The labels are translated once, for all the rows of a list.
    """
    labels = {f.name: _(f.label) for f in FIELDS}

    def excerpt(text: str, limit: int = length) -> str:
        # Only the start is shown: a value cut in two at this length still reads as text.
        readable = _VALUE.sub(
            lambda m: f"[{labels.get(m.group(1), m.group(1))}]", text[: limit * 3]
        )
        readable = _STATEMENT.sub("", readable)
        return readable if len(readable) <= limit else readable[: limit - 1].rstrip() + "…"

    return excerpt


def stat_labels() -> dict[str, str]:
    """The labels of a template's figures, translated; the counts are filled in with
    ``|format(num=…)``."""
    return {
        "used": _("Used"),
        "opened": _("Opened"),
        "replied": _("Replied"),
        "won": _("Won"),
        "of_followed": _("of %(num)d followed"),
        "of_sent": _("of %(num)d sent"),
        "of_opportunities": _("of %(num)d opportunities"),
        "best_opens": _("Best for opens"),
        "best_replies": _("Best for replies"),
        "best_sales": _("Best for sales"),
    }


def window_context(language: str | None, query: str, default_language: str) -> dict[str, Any]:
    """The template context of the Insert template window.

    ``language`` is what the rep chose (``""`` for all), or ``None`` before they chose: then
    the window starts in ``default_language``, or in all languages when that one has no
    templates at all, rather than starting empty.
    """
    found = choices(default_language if language is None else language, query)
    fell_back_from = None
    if language is None and default_language and found.total == 0:
        fell_back_from = default_language
        found = choices("", query)
    return {
        "template_choices": found,
        "template_fell_back_from": fell_back_from,
        "template_languages": [(code, language_name(code)) for code in languages()],
        "language_name": language_namer(),
        "template_excerpt": excerpter(),
        "stat_labels": stat_labels(),
        "measures": MEASURES,
    }


def default_language(first: Record | None) -> str:
    """The window's first language: the first recipient's when the host knows it, else the
    user's (S30)."""
    return _primary_language((first.language if first else None) or locale_tag())


@dataclass
class Applied:
    """A template filled in for a draft's first recipient."""

    template: EmailTemplate
    subject: str
    body: str
    missing: list[str]
    #: The first recipient's name when others would have had different values, else ``None``.
    differs_from: str | None


def recipients_of(to: str, cc: str, bcc: str, picked: dict[str, RecordRef]) -> list[Record | None]:
    """The records of a draft's recipients, in the order written; ``None`` where unknown."""
    found: list[Record | None] = []
    for text in (to, cc, bcc):
        for address in parse_addresses(text).valid:
            ref = picked.get(address.address.lower())
            record = current_engage.records.get(ref) if ref else None
            if record is None:
                matches = list(current_engage.records.find_by_email(address.address))
                record = matches[0] if len(matches) == 1 else None
            found.append(record)
    return found


def apply_to_draft(
    template: EmailTemplate, recipients: Sequence[Record | None], regarding: Record | None
) -> Applied:
    """Fill in ``template`` for the first recipient and the regarding record.

    :raises TemplateBroken: when it cannot be filled in.
    :raises TemplateRefused: when it reaches for what templates may not.
    """
    first = recipients[0] if recipients else None
    subject, body = _render_for(template, first, regarding)
    differs_from = None
    for other in recipients[1:COMPARED_RECIPIENTS]:
        if _render_for(template, other, regarding) != (subject, body):
            differs_from = (first.name if first else "") or _("the first recipient")
            break
    return Applied(
        template=template,
        subject=subject.text,
        body=clean_html(body.text),
        missing=[field_label(n) for n in dict.fromkeys(subject.missing + body.missing)],
        differs_from=differs_from,
    )


def _render_for(
    template: EmailTemplate, recipient: Record | None, regarding: Record | None
) -> tuple[Rendered, Rendered]:
    values = values_for(recipient, regarding, _extra_values(recipient, regarding))
    return (
        render_template_text(template.subject, values, html=False),
        render_template_text(template.html_body, values, html=True),
    )


def active_template(template_id: str | None) -> EmailTemplate | None:
    """The active template with this id (from a form), or ``None``."""
    row_id = parse_id(template_id)
    if row_id is None:
        return None
    template = current_engage.session.get(EmailTemplate, row_id)
    return template if template is not None and template.retired_at is None else None


def save_template(
    session: Session,
    template: EmailTemplate | None,
    *,
    by: str,
    name: str,
    language: str,
    category: str,
    subject: str,
    html_body: str,
) -> EmailTemplate:
    """Store a template (a new one when ``template`` is ``None``) and commit."""
    if template is None:
        template = EmailTemplate(created_by=by)
        session.add(template)
    template.name = name.strip()
    template.language = language
    template.category = category.strip()
    template.subject = subject.strip()
    template.html_body = html_body
    template.text_body = html_to_text(html_body)
    template.updated_by = by
    template.updated_at = utcnow()
    session.commit()
    return template


def set_retired(session: Session, template: EmailTemplate, retired: bool, *, by: str) -> None:
    """Retire a template (reps no longer see it) or offer it again; its figures stay."""
    template.retired_at = utcnow() if retired else None
    template.updated_by = by
    session.commit()
