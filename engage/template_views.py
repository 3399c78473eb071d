"""Email templates: the sales managers' pages (SPEC S29, S32) and Insert template (S30, S31).

Sales managers create, edit, preview and retire templates under ``<prefix>/templates``. Reps
use them from the compose panel's Insert template window, whose parts live here too: the list
of templates with their performance (:func:`choices`), and applying one to a draft
(:func:`apply_to_draft`), which the compose views call.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import unescape
from typing import Any

import sqlalchemy as sa
from babel import Locale, UnknownLocaleError
from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import HiddenField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from .access import manager_user, sales_user
from .compose import clean_html, html_to_text, parse_addresses, text_to_html
from .extension import current_engage
from .i18n import gettext as _
from .i18n import lazy_gettext
from .models import EmailTemplate, utcnow
from .records import Record, RecordRef
from .template_stats import MEASURES, Performance, best_templates
from .templating import (
    FIELDS,
    Rendered,
    TemplateBroken,
    TemplateRefused,
    check_syntax,
    render_template_text,
    values_for,
)
from .views import _locale, blueprint

#: The most recipients whose values are compared with the first's when a template is applied.
COMPARED_RECIPIENTS = 20


def language_name(code: str) -> str:
    """A language's name in the user's language (``"de"`` → ``"German"`` for English)."""
    return _language_name(code, _locale())


def language_namer() -> Any:
    """:func:`language_name` for one page: the user's language is looked up once."""
    locale = _locale()
    return lambda code: _language_name(code, locale)


@functools.lru_cache(maxsize=512)
def _language_name(code: str, locale: str) -> str:
    # Cached: the window names the language of each of up to hundreds of templates.
    try:
        name = Locale.parse(code).get_display_name(Locale.parse(locale, sep="-"))
    except (UnknownLocaleError, ValueError):
        return code
    return (name or code)[:1].upper() + (name or code)[1:]


def _languages() -> list[str]:
    return [str(code) for code in current_app.config["ENGAGE_TEMPLATE_LANGUAGES"]]


def _field_label(name: str) -> str:
    for template_field in FIELDS:
        if template_field.name == name:
            return _(template_field.label)
    return name


# ---- The managers' pages (S29, S32) --------------------------------------------------------


class TemplateForm(FlaskForm):
    """A template as a sales manager writes it."""

    name = StringField(lazy_gettext("Name"), validators=[DataRequired(), Length(max=200)])
    language = SelectField(lazy_gettext("Language"), validators=[DataRequired()])
    category = StringField(lazy_gettext("Category"), validators=[Optional(), Length(max=100)])
    subject = StringField(lazy_gettext("Subject"), validators=[Length(max=900)])
    body = TextAreaField(lazy_gettext("Body"))
    body_format = HiddenField(default="text")
    preview_record = HiddenField()

    def body_html(self) -> str:
        """The body as sanitised HTML, from the rich editor or the plain textarea.

        Inside ``{{ … }}`` and ``{% … %}`` the writer wrote Jinja, not HTML: the entities the
        editor and the sanitiser put there (``&gt;`` for ``>``) are turned back into the
        characters typed, or ``{% if n > 1 %}`` would not parse.
        """
        source = self.body.data or ""
        html = clean_html(source if self.body_format.data == "html" else text_to_html(source))
        return _JINJA_TAG.sub(lambda m: unescape(m.group(0)), html)


#: A Jinja expression or statement in a body's HTML.
_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)


def _template_or_404(template_id: int) -> EmailTemplate:
    template = current_engage.session.get(EmailTemplate, template_id)
    if template is None:
        abort(404)
    return template


@blueprint.get("/templates")
def templates_list() -> Any:
    """Every template with its performance; sales managers only (S32)."""
    manager_user()
    show_retired = request.args.get("retired") == "1"
    language = request.args.get("language", "")
    search = request.args.get("q", "").strip()[:200]
    query = sa.select(EmailTemplate).order_by(EmailTemplate.language, EmailTemplate.name)
    if not show_retired:
        query = query.where(EmailTemplate.retired_at.is_(None))
    every = list(current_engage.session.scalars(query))
    templates = matching([t for t in every if not language or t.language == language], search)
    return render_template(
        "engage/templates_page.html",
        templates=templates,
        total=len(every),
        language=language,
        search=search,
        languages=[(code, language_name(code)) for code in _languages()],
        performance={t.id: Performance.of(t) for t in templates},
        best=best_templates([t for t in every if t.retired_at is None]),
        show_retired=show_retired,
        language_name=language_namer(),
        stat_labels=stat_labels(),
    )


@blueprint.route("/templates/new", methods=["GET", "POST"])
def template_new() -> Any:
    """Create a template."""
    return _edit(None)


@blueprint.route("/templates/<int:template_id>", methods=["GET", "POST"])
def template_edit(template_id: int) -> Any:
    """Edit, preview, retire or restore a template."""
    manager_user()
    return _edit(_template_or_404(template_id))


def _edit(template: EmailTemplate | None) -> Any:
    user = manager_user()
    form = TemplateForm(obj=None)
    form.language.choices = [(code, language_name(code)) for code in _languages()]
    if template is not None and template.language not in _languages():
        form.language.choices.append((template.language, language_name(template.language)))
    action = request.form.get("action", "save")
    session = current_engage.session
    if request.method == "GET":
        if template is not None:
            form.name.data = template.name
            form.language.data = template.language
            form.category.data = template.category
            form.subject.data = template.subject
            form.body.data = template.html_body
            form.body_format.data = "html"
        else:
            form.language.data = _default_user_language()
        return _editor(form, template)
    if template is not None and action in {"retire", "restore"}:
        template.retired_at = utcnow() if action == "retire" else None
        template.updated_by = user.id
        session.commit()
        flash(
            _(
                "“%(name)s” is retired: reps no longer see it in Insert template.",
                name=template.name,
            )
            if action == "retire"
            else _("“%(name)s” is offered in Insert template again.", name=template.name),
            "engage-success",
        )
        return redirect(url_for("engage.templates_list"))
    search = request.form.get("regarding_search", "").strip()
    if search:
        # Without JavaScript the preview record is chosen by typing its name.
        found = list(current_engage.records.search(search, limit=1))
        form.preview_record.data = str(found[0].ref) if found else ""
    valid = form.validate()
    problems = _syntax_problems(form)
    if action == "preview":
        return _editor(form, template, problems=problems, preview=_preview(form, problems))
    if not valid or problems:
        return _editor(form, template, problems=problems, status=422)
    body = form.body_html()
    if action == "save_copy":
        # A copy to start from, such as the same message in another language; the original
        # and its figures stay as they were.
        template = None
    if template is None:
        template = EmailTemplate(created_by=user.id)
        session.add(template)
    template.name = form.name.data.strip()
    template.language = form.language.data
    template.category = (form.category.data or "").strip()
    template.subject = (form.subject.data or "").strip()
    template.html_body = body
    template.text_body = html_to_text(body)
    template.updated_by = user.id
    template.updated_at = utcnow()
    session.commit()
    flash(
        _("Saved as a new template, “%(name)s”.", name=template.name)
        if action == "save_copy"
        else _("Template “%(name)s” saved.", name=template.name),
        "engage-success",
    )
    return redirect(url_for("engage.templates_list"))


def _default_user_language() -> str:
    language = _primary_language(_locale())
    languages = _languages()
    return language if language in languages or not languages else languages[0]


#: Closing tags after which the rich editor's HTML starts a new line for the writer.
_LINE_END = re.compile(r"(<br\s*/?>|</(?:div|p|li|h[1-6]|blockquote|pre)>)(?!\n)", re.IGNORECASE)


def _as_lines(html: str) -> str:
    # Trix writes the whole body on one line; break it where the writer sees a new line so
    # that a syntax error is reported on the line they can find.
    return _LINE_END.sub("\\1\n", html)


def _syntax_problems(form: TemplateForm) -> dict[str, str]:
    problems: dict[str, str] = {}
    for name, source in (("subject", form.subject.data or ""), ("body", form.body_html())):
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


def _preview(form: TemplateForm, problems: dict[str, str]) -> Preview:
    ref_text = form.preview_record.data or ""
    record = None
    if ref_text:
        try:
            record = current_engage.records.get(RecordRef.parse(ref_text))
        except ValueError:
            record = None
    preview = Preview(record=record)
    if problems:
        preview.error = _("Fix the marked problems to see the preview.")
        return preview
    values = values_for(record, record, _extra_values(record, record))
    try:
        subject = render_template_text(form.subject.data or "", values, html=False)
        body = render_template_text(form.body_html(), values, html=True)
    except (TemplateBroken, TemplateRefused) as exc:
        preview.error = str(exc)
        return preview
    preview.subject = subject.text
    preview.body = Markup(clean_html(body.text))
    preview.missing = [_field_label(n) for n in dict.fromkeys(subject.missing + body.missing)]
    return preview


def _extra_values(recipient: Record | None, regarding: Record | None) -> dict[str, str]:
    extra: dict[str, str] = {}
    for record in (recipient, regarding):
        if record is not None:
            extra.update(record.template_values)
    return extra


def _editor(
    form: TemplateForm,
    template: EmailTemplate | None,
    *,
    problems: dict[str, str] | None = None,
    preview: Preview | None = None,
    status: int = 200,
) -> Any:
    preview_record = None
    if form.preview_record.data:
        try:
            preview_record = current_engage.records.get(RecordRef.parse(form.preview_record.data))
        except ValueError:
            preview_record = None
    body = form.body.data or ""
    html = body if form.body_format.data == "html" else text_to_html(body)
    page = render_template(
        "engage/template_edit_page.html",
        form=form,
        template=template,
        problems=problems or {},
        preview=preview,
        preview_record=preview_record,
        body_html=html,
        body_text=html_to_text(html),
        fields=FIELDS,
        performance=Performance.of(template) if template else None,
        stat_labels=stat_labels(),
    )
    return page, status


# ---- Insert template (S30, S31) -------------------------------------------------------------


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
        "template_languages": [(code, language_name(code)) for code in _languages()],
        "language_name": language_namer(),
        "template_excerpt": excerpter(),
        "stat_labels": stat_labels(),
        "measures": MEASURES,
    }


@blueprint.get("/templates/choices")
def template_choices() -> Any:
    """The Insert template window's list, for a language and a search (htmx)."""
    sales_user()
    language = request.args.get("template_language", "")[:10]
    query = request.args.get("template_q", "").strip()[:200]
    context = window_context(language, query, language)
    return render_template("engage/_template_choices.html", **context)


def default_language(first: Record | None) -> str:
    """The window's first language: the first recipient's when the host knows it, else the
    user's (S30)."""
    return _primary_language((first.language if first else None) or _locale())


def _primary_language(tag: str) -> str:
    # "de-AT", "de_AT" and "DE" are all German, as templates are kept per language.
    return tag.replace("_", "-").split("-")[0].lower()


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
        missing=[_field_label(n) for n in dict.fromkeys(subject.missing + body.missing)],
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
    if not template_id or not template_id.isdigit():
        return None
    template = current_engage.session.get(EmailTemplate, int(template_id))
    return template if template is not None and template.retired_at is None else None
