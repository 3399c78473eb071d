"""The WTForms forms of engage's screens.

Each form checks what it can on its own (lengths, choices, required fields) and hands the
domain plain values; the domain's own checks (addresses, the template sandbox, times) come back
as errors on the form's fields.
"""

from __future__ import annotations

import re
from html import unescape

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    IntegerField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from ..content import clean_html, text_to_html
from ..i18n import lazy_gettext


class SettingsForm(FlaskForm):
    """The organisation settings an admin can change."""

    engagement_enabled = BooleanField(lazy_gettext("Email engagement enabled"))
    opt_out_line = BooleanField(
        lazy_gettext("Followed emails carry a “Don't track my opens and clicks” link")
    )


#: A Jinja expression or statement in a body's HTML.
_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)


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


class StepForm(Form):
    """One step of a sequence, inside :class:`SequenceForm` (its CSRF token covers it)."""

    kind = SelectField(lazy_gettext("What happens"), default="auto_email")
    wait_days = IntegerField(
        lazy_gettext("Wait (working days)"),
        default=0,
        validators=[InputRequired(), NumberRange(min=0, max=365)],
    )
    template = SelectField(lazy_gettext("Template"), default="")
    notes = TextAreaField(lazy_gettext("Notes for the rep"), validators=[Length(max=2000)])
    remove = BooleanField(lazy_gettext("Remove this step"))


class SequenceForm(FlaskForm):
    """A sequence as a sales manager writes it (S46)."""

    name = StringField(lazy_gettext("Name"), validators=[DataRequired(), Length(max=200)])
    thread_replies = BooleanField(lazy_gettext("Send later emails as replies in the same thread"))
    steps = FieldList(FormField(StepForm), min_entries=1, max_entries=20)


class EnrolForm(FlaskForm):
    """The records a rep enrols, and the sequence (S47)."""

    sequence = SelectField(lazy_gettext("Sequence"), validators=[DataRequired()])
