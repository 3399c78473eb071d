"""engage's translations: the catalogues are complete, consistent and used.

engage's messages live in its own Flask-Babel domain ``engage`` (engage/i18n.py), extracted with
babel.cfg into engage/translations/engage.pot; scripts/translations.sh extracts, updates and
compiles. These tests fail when a step was left out: a message added to the code but not to the
.pot, a .pot entry not translated, a .po edited but not compiled.
"""

from __future__ import annotations

import ast
import re
from html import unescape
from io import BytesIO
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

from tests.support import COMPOSE_URL, DEMO_TEST_CLIENT, demo_config, save_template, sign_in

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "engage"
TRANSLATIONS = PACKAGE / "translations"
POT = TRANSLATIONS / "engage.pot"
LANGUAGES = sorted(p.name for p in TRANSLATIONS.iterdir() if (p / "LC_MESSAGES").is_dir())

#: The keywords scripts/translations.sh passes besides babel.cfg's (Babel's defaults cover
#: ``_``, ``gettext`` and ``ngettext``).
KEYWORDS = {**DEFAULT_KEYWORDS, "lazy_gettext": None, "_e": None, "ngettext_e": (1, 2)}
GETTEXT_NAMES = {"_", "gettext", "ngettext", "lazy_gettext"}

#: A %-conversion: named (``%(name)s``), ``%%``, or positional (``%s``), as Python reads them.
PLACEHOLDER = re.compile(
    r"%(?:\((\w+)\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?([diouxXeEfFgGcrsa%])"
)


def read_catalog(path: Path) -> Catalog:
    with path.open("rb") as f:
        return read_po(f)


def po_path(language: str) -> Path:
    return TRANSLATIONS / language / "LC_MESSAGES" / "engage.po"


def _key(value: object) -> object:
    # Plural ids and strings come as tuples from a .po and as lists from a .mo.
    return tuple(value) if isinstance(value, list | tuple) else value


def mo_messages(catalog: Catalog) -> dict[object, object]:
    return {(_key(m.id), m.context): _key(m.string) for m in catalog if m.id}


def ids(catalog: Catalog) -> set[object]:
    return {_key(m.id) for m in catalog if m.id}


def test_there_is_a_german_catalogue():
    assert "de" in LANGUAGES


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_committed_mo_is_the_compiled_po(language):
    po = read_catalog(po_path(language))
    compiled = BytesIO()
    write_mo(compiled, po)
    compiled.seek(0)
    with (po_path(language).with_suffix(".mo")).open("rb") as f:
        committed = read_mo(f)
    assert mo_messages(committed) == mo_messages(read_mo(compiled)), (
        f"engage/translations/{language}/LC_MESSAGES/engage.mo is stale: "
        "run scripts/translations.sh and commit the .mo"
    )
    assert committed.plural_forms == po.plural_forms


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_of_the_pot_is_translated(language):
    pot = read_catalog(POT)
    po = read_catalog(po_path(language))
    assert ids(po) == ids(pot), "run scripts/translations.sh to update the catalogue"
    if language == "de":
        assert po.plural_forms == "nplurals=2; plural=(n != 1);"
    assert not po.fuzzy, "the catalogue's header is marked fuzzy: pybabel compile skips it"
    untranslated, fuzzy = [], []
    for message in po:
        if not message.id:
            continue
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        if not all(forms) or (message.pluralizable and len(forms) != po.num_plurals):
            untranslated.append(message.id)
        if message.fuzzy:
            fuzzy.append(message.id)
    assert untranslated == []
    assert fuzzy == []


def placeholders(text: str) -> set[tuple[str | None, str]]:
    return set(PLACEHOLDER.findall(text))


def stray_percent(text: str) -> bool:
    return "%" in PLACEHOLDER.sub("", text)


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_keep_the_placeholders(language):
    wrong = []
    for message in read_catalog(po_path(language)):
        if not message.id:
            continue
        sources = message.id if message.pluralizable else (message.id,)
        forms = message.string if message.pluralizable else (message.string,)
        expected = set().union(*map(placeholders, sources))
        strays = any(map(stray_percent, sources))
        for form in forms:
            if placeholders(form) != expected or (stray_percent(form) and not strays):
                wrong.append((message.id, form))
    assert wrong == []


def _messages_in_fstrings() -> set[str]:
    """Messages whose gettext call sits inside an f-string.

    Babel sees into f-strings only on Python 3.12 and later (their own tokens), so these may
    or may not be extracted; the comparison below leaves them out either way.
    """
    found = set()
    for path in PACKAGE.rglob("*.py"):
        if "demo" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.JoinedStr):
                continue
            for call in ast.walk(node):
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Name)
                    and call.func.id in GETTEXT_NAMES
                    and call.args
                    and isinstance(call.args[0], ast.Constant)
                ):
                    found.add(call.args[0].value)
    return found


def test_the_pot_is_up_to_date_with_the_sources():
    with (ROOT / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f, "babel.cfg")
    extracted = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
        str(PACKAGE), method_map, options_map, keywords=KEYWORDS
    ):
        extracted.add(message if isinstance(message, str) else tuple(message))
    in_fstrings = _messages_in_fstrings()
    pot = ids(read_catalog(POT)) - in_fstrings
    extracted -= in_fstrings
    assert sorted(map(str, extracted - pot)) == [], "not in the .pot: run scripts/translations.sh"
    assert sorted(map(str, pot - extracted)) == [], (
        "gone from the code: run scripts/translations.sh"
    )


def test_the_demo_is_not_extracted():
    pot = POT.read_text(encoding="utf-8")
    assert "engage/demo/" not in pot


# ---- German on the page ------------------------------------------------------------------


def text_of(response) -> str:
    assert response.status_code == 200, response.status_code
    return unescape(response.get_data(as_text=True))


@pytest.fixture
def german_app(app):
    """The host app, its Flask-Babel locale selector answering German (as a host's would)."""
    mia = sign_in(app.test_client(), 3)
    assert save_template(mia, name="Danke", language="de").status_code in (200, 302, 303)
    app.extensions["babel"].locale_selector = lambda: "de"
    return app


def test_a_german_salesperson_sees_the_compose_panel_in_german(german_app):
    sam = sign_in(german_app.test_client(), 1)
    panel = text_of(sam.get(COMPOSE_URL))
    for german in (
        "Neue E-Mail",
        "Hinsichtlich",
        "Betreff",
        ">Senden</button>",
        ">Speichern</button>",
        "Vorlage einfügen",
        "Vorlage anwenden",
        "Später senden",
        "Erinnerung festlegen",
        "Anhänge",
        "Neuer Anhang",
        "Um einen Link hinzuzufügen, wählen Sie den Text aus und drücken Sie Strg+K",
    ):
        assert german in panel, german
    for english in ("Insert template", "Apply template", "Send later", "Set reminder", ">Send<"):
        assert english not in panel, english
    # The templates window: its filters, the list and each template's figures.
    for german in (
        "Alle Sprachen",
        "Vorlagen suchen",
        'placeholder="Name oder Wörter im Text"',
        '<option value="de" selected>Deutsch</option>',
        "1 Vorlage",
        "Verwendet",
        "0-mal",
    ):
        assert german in panel, german

    none = text_of(sam.get("/crm/engage/templates/choices?template_language=fr&template_q="))
    assert (
        "Es gibt keine Vorlagen in der Sprache Französisch. "
        "Wählen Sie „Alle Sprachen“, um die anderen zu sehen."
    ) in none
    nothing = text_of(sam.get("/crm/engage/templates/choices?template_language=&template_q=zzz"))
    assert "Keine Vorlage entspricht „zzz“." in nothing


def test_weekdays_and_months_follow_the_users_language(german_app):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from engage.i18n import format_when

    tuesday = datetime(2026, 11, 24, 9, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    with german_app.test_request_context():
        assert format_when(tuesday) == "Di. 2026-11-24 09:00"
        assert format_when(tuesday, "long") == "Di. 24 Nov. 2026 09:00"
    german_app.extensions["babel"].locale_selector = lambda: "en"
    with german_app.test_request_context():
        assert format_when(tuesday, "short") == "Tue 09:00"  # in its own zone, not UTC


def test_without_a_locale_selector_the_panel_stays_english(app):
    sam = sign_in(app.test_client(), 1)
    panel = text_of(sam.get(COMPOSE_URL))
    assert "Insert template" in panel and "Vorlage einfügen" not in panel


# ---- The demo: the browser's language ------------------------------------------------------


def test_the_demo_shows_engage_in_german_to_a_browser_that_asks_for_it(tmp_path, database_url):
    from engage.demo import create_app
    from engage.demo.models import Contact, User, db

    app = create_app(demo_config(tmp_path, database_url, **DEMO_TEST_CLIENT))
    with app.app_context():
        user_id = db.session.query(User.id).filter(User.name == "Mia Berg").scalar()
        contact_id = db.session.query(Contact.id).filter(Contact.last_name == "Müller").scalar()
    try:
        client = app.test_client()
        assert client.post("/sign-in", data={"user_id": user_id}).status_code == 302
        timeline = f"/engage/timeline/contact/{contact_id}"

        def get(path: str, languages: str | None) -> str:
            headers = {"Accept-Language": languages} if languages else {}
            return text_of(client.get(path, headers=headers))

        german = "de-DE,de;q=0.9,en;q=0.8"
        assert '<html lang="de">' in get(f"/contacts/{contact_id}", german)
        assert "Zeitskala-Datensatz erstellen" in get(timeline, german)
        # English for a browser asking for English (as Playwright's chromium does), for one
        # asking for a language engage does not have, and for none at all (the test client).
        for languages in ("en-US,en;q=0.9", "fr-FR,fr;q=0.9", None):
            assert "Create timeline record" in get(timeline, languages), languages
            assert '<html lang="en">' in get(f"/contacts/{contact_id}", languages), languages
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
