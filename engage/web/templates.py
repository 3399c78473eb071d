"""The sales managers' email templates (SPEC S29, S32), and the Insert template window's list.

Sales managers create, edit, preview and retire templates under ``<prefix>/templates``; a
salesperson gets 403 with the reason. What templates are and do is in
:mod:`engage.template_library`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for

from .. import template_library as library
from ..content import html_to_text, text_to_html
from ..context import current_engage
from ..i18n import gettext as _
from ..models import EmailTemplate
from ..template_performance import Performance, best_templates
from ..templating import FIELDS
from .blueprint import blueprint
from .forms import TemplateForm
from .guards import manager_user, sales_user


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
    templates = library.matching(
        [t for t in every if not language or t.language == language], search
    )
    return render_template(
        "engage/templates_page.html",
        templates=templates,
        total=len(every),
        language=language,
        search=search,
        languages=[(code, library.language_name(code)) for code in library.languages()],
        performance={t.id: Performance.of(t) for t in templates},
        best=best_templates([t for t in every if t.retired_at is None]),
        show_retired=show_retired,
        language_name=library.language_namer(),
        stat_labels=library.stat_labels(),
    )


@blueprint.route("/templates/new", methods=["GET", "POST"])
def template_new() -> Any:
    """Create a template."""
    return _edit(None)


@blueprint.route("/templates/<engage_id:template_id>", methods=["GET", "POST"])
def template_edit(template_id: int) -> Any:
    """Edit, preview, retire or restore a template."""
    manager_user()
    return _edit(_template_or_404(template_id))


def _edit(template: EmailTemplate | None) -> Any:
    user = manager_user()
    form = TemplateForm(obj=None)
    form.language.choices = [(code, library.language_name(code)) for code in library.languages()]
    if template is not None and template.language not in library.languages():
        form.language.choices.append((template.language, library.language_name(template.language)))
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
            form.language.data = library.default_user_language()
        return _editor(form, template)
    if template is not None and action in {"retire", "restore"}:
        library.set_retired(session, template, action == "retire", by=user.id)
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
    problems = library.syntax_problems(form.subject.data or "", form.body_html())
    if action == "preview":
        preview = library.preview(
            library.record_of(form.preview_record.data),
            form.subject.data or "",
            form.body_html(),
            problems,
        )
        return _editor(form, template, problems=problems, preview=preview)
    if not valid or problems:
        return _editor(form, template, problems=problems, status=422)
    body = form.body_html()
    if action == "save_copy":
        # A copy to start from, such as the same message in another language; the original
        # and its figures stay as they were.
        template = None
    template = library.save_template(
        session,
        template,
        by=user.id,
        name=form.name.data or "",
        language=form.language.data or "",
        category=form.category.data or "",
        subject=form.subject.data or "",
        html_body=body,
    )
    flash(
        _("Saved as a new template, “%(name)s”.", name=template.name)
        if action == "save_copy"
        else _("Template “%(name)s” saved.", name=template.name),
        "engage-success",
    )
    return redirect(url_for("engage.templates_list"))


def _editor(
    form: TemplateForm,
    template: EmailTemplate | None,
    *,
    problems: dict[str, str] | None = None,
    preview: library.Preview | None = None,
    status: int = 200,
) -> Any:
    preview_record = library.record_of(form.preview_record.data)
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
        stat_labels=library.stat_labels(),
    )
    return page, status


# ---- Insert template (S30, S31) -------------------------------------------------------------


@blueprint.get("/templates/choices")
def template_choices() -> Any:
    """The Insert template window's list, for a language and a search (htmx)."""
    sales_user()
    language = request.args.get("template_language", "")[:10]
    query = request.args.get("template_q", "").strip()[:200]
    context = library.window_context(language, query, language)
    return render_template("engage/_template_choices.html", **context)
