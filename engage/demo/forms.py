"""The demo CRM's forms (Flask-WTF, so each carries its CSRF token)."""

from __future__ import annotations

from functools import cache
from typing import Any

from babel import Locale
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import IntegerField, RadioField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from engage import FollowPreference
from engage.geonames import country_code

try:  # WTForms 3.3 deprecates (value, label) tuples in favour of SelectChoice.
    from wtforms import SelectChoice
except ImportError:  # pragma: no cover - WTForms < 3.3
    SelectChoice = None


def choice(value: str, label: Any) -> Any:
    """One option of a select or radio field, in the form this WTForms version prefers."""
    return (value, label) if SelectChoice is None else SelectChoice(value, label)


# Codes that babel lists as territories but that are no country a letter can be sent to.
_NOT_COUNTRIES = frozenset({"EU", "EZ", "QO", "UN", "XA", "XB", "ZZ"})


@cache
def country_names(locale: str = "en") -> dict[str, str]:
    """ISO 3166-1 alpha-2 codes and their names in ``locale``, sorted by name."""
    territories = Locale.parse(locale).territories
    codes = {
        code: name
        for code, name in territories.items()
        if len(code) == 2 and code.isalpha() and code not in _NOT_COUNTRIES
    }
    return dict(sorted(codes.items(), key=lambda item: item[1]))


def _country(value: str | None) -> str | None:
    """A country written as a name ("Germany", "Deutschland") or a code, kept as its code."""
    if not isinstance(value, str):
        return value
    code = country_code(value)
    return code if code is not None else value.strip().upper()


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class SignInForm(FlaskForm):
    """Pick a demo user to sign in as; each user's button submits their id."""

    user_id = IntegerField(validators=[DataRequired()])


class SignOutForm(FlaskForm):
    """A bare form so that signing out is a POST with a CSRF token."""


class OpportunityWonForm(FlaskForm):
    """Mark an opportunity won, or open again; the button submits ``won`` as ``1`` or ``0``."""

    won = RadioField(choices=[choice("1", _l("Won")), choice("0", _l("Open"))])


class PersonSettingsForm(FlaskForm):
    """A contact's or lead's postal address and follow-email preference."""

    street = StringField(_l("Street"), filters=[_strip], validators=[Length(max=200)])
    postal_code = StringField(_l("Postal code"), filters=[_strip], validators=[Length(max=20)])
    city = StringField(_l("City"), filters=[_strip], validators=[Length(max=100)])
    region = StringField(_l("State or region"), filters=[_strip], validators=[Length(max=100)])
    country = StringField(
        _l("Country code"),
        description=_l("Two letters, such as US, DE or JP, or the country's name."),
        filters=[_country],
        validators=[Optional()],
    )
    follow_preference = RadioField(
        _l("Follow email"),
        choices=[
            choice(FollowPreference.ALLOW.value, _l("Allow")),
            choice(FollowPreference.DO_NOT_ALLOW.value, _l("Do not allow")),
        ],
        validators=[DataRequired(_l("Choose whether emails to this person may be followed."))],
    )

    def validate_country(self, field: StringField) -> None:
        """Accept a known country, kept as its ISO 3166-1 alpha-2 code."""
        if field.data and field.data not in country_names():
            raise ValidationError(_l("Enter a two-letter country code, such as US, DE or JP."))


class ReplyForm(FlaskForm):
    """Answer a message in the demo mailbox as one of its recipients."""

    reply_as = SelectField(_l("Reply as"), validate_choice=True)
    text = TextAreaField(
        _l("Your reply"),
        validators=[DataRequired(_l("Write a few words to reply with.")), Length(max=20000)],
    )
