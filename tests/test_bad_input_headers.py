"""Bad input, headers: every answer of engage carries its security headers, the host's don't.

engage's pages, its partials, its explained refusals (400, 401, 403, 404), its other files and
the URLs a recipient fetches from an email (the pixel, also on its fast path below Flask, a
tracked link, a followed attachment) each get exactly the headers the README promises: a
Content-Security-Policy, X-Frame-Options, nosniff and a Referrer-Policy (no-referrer on the
recipients' URLs). A host loosens them through config, and a page of the host is left alone.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

import pytest
from werkzeug.test import Client

from engage.config import DEFAULTS
from engage.models import Attachment, Email, Link, PartyRole
from engage.storage import LocalFolderStore
from engage.tracking import new_token
from tests.hostapp import db
from tests.support import add_email, sign_in

PREFIX = "/crm/engage"

#: The policy of a page: its nonce lets in the <style> tags Trix and htmx add.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'self'"
)
#: The policy of an answer that is not a page (a partial, a file, the pixel): no nonce.
BARE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'self'"
)
SECURITY = (
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "Referrer-Policy",
)
NONCE_META = re.compile(r'<meta name="trix-csp-nonce" content="([^"]+)">')

SAM, MIA, NORA, ALEX, SVEN = 1, 3, 4, 5, 6  # salesperson, manager, no role, admin, other team
PDF = b"%PDF-1.4 a small offer\n"


@dataclass
class Wired:
    """The host app with one sent, followed email of Sam's: a token, a link, a followed file."""

    app: Any
    email_id: int
    token: str
    attachment_id: int

    def get(self, path: str, person: int | None = None, *, htmx: bool = False, method="GET"):
        client = self.app.test_client()
        if person is not None:
            sign_in(client, person)
        headers = {"HX-Request": "true"} if htmx else {}
        return client.open(PREFIX + path, method=method, headers=headers)

    def below_the_fast_path(self, path: str):
        """Ask Flask itself, as an app that bypasses ``app.wsgi_app`` would."""
        return Client(self.app.wsgi_app.wrapped).get(PREFIX + path)


def wire(app, tmp_path) -> Wired:
    app.extensions["engage"].store = LocalFolderStore(tmp_path / "attachments")
    email_id = add_email(app, SAM, "Our offer")
    with app.test_request_context():
        token = new_token()
    with app.app_context():
        email = db.session.get(Email, email_id)
        ada = next(p for p in email.parties if p.role is PartyRole.TO)
        ada.token = token
        email.links = [Link(position=0, url="https://example.com/offer")]
        key = app.extensions["engage"].store.save(io.BytesIO(PDF), filename="offer.pdf")
        attachment = Attachment(
            filename="offer.pdf",
            content_type="application/pdf",
            size=len(PDF),
            storage_key=key,
            followed=True,
        )
        email.attachments.append(attachment)
        db.session.commit()
        return Wired(app, email_id, token, attachment.id)


@pytest.fixture
def wired(app, tmp_path, redis_client) -> Wired:
    return wire(app, tmp_path)


@pytest.fixture
def wired_with(database_url, redis_url, redis_client, tmp_path):
    """``wired_with(**config)``: the wired host app built with ``config`` from the start."""
    from tests import hostapp

    apps = []

    def make(**config: Any) -> Wired:
        app = hostapp.create_app(
            {
                "SQLALCHEMY_DATABASE_URI": database_url,
                "ENGAGE_REDIS_URL": redis_url,
                "TESTING": True,
                "ENGAGE_EVENT_BUFFER_MS": 0,
                **config,
            }
        )
        apps.append(app)
        return wire(app, tmp_path)

    yield make
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.drop_all()
            hostapp.engage.drop_all()


def security_of(response) -> dict[str, str | None]:
    return {name: response.headers.get(name) for name in SECURITY}


def page_headers(response, *, referrer: str = "same-origin") -> dict[str, str]:
    """What a page of engage must carry, its nonce being the one its body hands to Trix."""
    found = NONCE_META.findall(response.get_data(as_text=True))
    assert len(found) == 1, "a page hands Trix and htmx exactly one nonce"
    (nonce,) = found
    assert re.fullmatch(r"[A-Za-z0-9_-]{24}", nonce)
    return {
        "Content-Security-Policy": PAGE_POLICY.format(nonce=nonce),
        "X-Frame-Options": "SAMEORIGIN",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": referrer,
    }


def bare_headers(*, referrer: str = "same-origin") -> dict[str, str]:
    return {
        "Content-Security-Policy": BARE_POLICY,
        "X-Frame-Options": "SAMEORIGIN",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": referrer,
    }


# -- every kind of answer ----------------------------------------------------------------------

# name: (who asks, path, htmx, method, status)
PAGES = {
    "home page": (SAM, "/", False, "GET", 200),
    "timeline page": (SAM, "/timeline/customer/1", False, "GET", 200),
    "email page": (SAM, "/emails/{email}", False, "GET", 200),
    "compose page": (SAM, "/compose?regarding=customer:1", False, "GET", 200),
    "assistant page": (SAM, "/assistant", False, "GET", 200),
    "templates page": (MIA, "/templates", False, "GET", 200),
    "template editor page": (MIA, "/templates/new", False, "GET", 200),
    "settings page": (ALEX, "/settings", False, "GET", 200),
    "offline page": (None, "/offline", False, "GET", 200),
    "401 page, signed out": (None, "/timeline/customer/1", False, "GET", 401),
    "403 page, no sales role": (NORA, "/timeline/customer/1", False, "GET", 403),
    "403 page, templates for a salesperson": (SAM, "/templates", False, "GET", 403),
    "404 page, another team's email": (SVEN, "/emails/{email}", False, "GET", 404),
    "404 page, no such email": (SAM, "/emails/999999", False, "GET", 404),
    "404 page, unknown record type": (SAM, "/timeline/nothing/1", False, "GET", 404),
    "400 page, form without its CSRF token": (SAM, "/assistant/read", False, "POST", 400),
}
PARTIALS = {
    "timeline partial": (SAM, "/timeline/customer/1", True, "GET", 200),
    "compose partial": (SAM, "/compose?regarding=customer:1", True, "GET", 200),
    "assistant partial": (SAM, "/assistant", True, "GET", 200),
    "interactions partial": (SAM, "/emails/{email}/interactions", True, "GET", 200),
    "401 partial, signed out": (None, "/timeline/customer/1", True, "GET", 401),
    "403 partial, no sales role": (NORA, "/timeline/customer/1", True, "GET", 403),
    "404 partial, another team's email": (SVEN, "/emails/{email}/interactions", True, "GET", 404),
    "400 partial, htmx post without its CSRF token": (SAM, "/assistant/read", True, "POST", 400),
    "the web app manifest": (None, "/manifest.webmanifest", False, "GET", 200),
    "the service worker": (None, "/sw.js", False, "GET", 200),
    "engage.js": (None, "/static/engage/engage.js", False, "GET", 200),
    "a rep's download of an attachment": (
        SAM,
        "/emails/{email}/attachments/{attachment}",
        False,
        "GET",
        200,
    ),
}


def _path(wired: Wired, path: str) -> str:
    return path.format(email=wired.email_id, attachment=wired.attachment_id, token=wired.token)


@pytest.mark.parametrize("name", PAGES)
def test_every_page_and_explained_refusal_has_the_page_headers(wired, name):
    person, path, htmx, method, status = PAGES[name]
    response = wired.get(_path(wired, path), person, htmx=htmx, method=method)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/html"
    assert security_of(response) == page_headers(response)


@pytest.mark.parametrize("name", PARTIALS)
def test_every_partial_and_file_has_the_headers_without_a_nonce(wired, name):
    person, path, htmx, method, status = PARTIALS[name]
    response = wired.get(_path(wired, path), person, htmx=htmx, method=method)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert not NONCE_META.search(response.get_data(as_text=True))
    assert security_of(response) == bare_headers()


def test_two_pages_never_share_a_nonce(wired):
    first, second = (wired.get("/timeline/customer/1", SAM) for _ in range(2))
    assert page_headers(first) != page_headers(second)


# -- the URLs in an email ------------------------------------------------------------------------

NO_STORE = "no-store, no-cache, must-revalidate, max-age=0"

# name: (path, how it is asked, status, mimetype)
TRACKING = {
    "pixel, fast path": ("/t/o/{token}.gif", "client", 200, "image/gif"),
    "pixel, fast path, forged token": ("/t/o/forged.gif", "client", 200, "image/gif"),
    "pixel, the route below the fast path": ("/t/o/{token}.gif", "flask", 200, "image/gif"),
    "tracked link": ("/t/c/{token}/0", "client", 302, None),
    "followed attachment": ("/t/a/{token}/{attachment}", "client", 200, "application/pdf"),
}
TRACKING_REFUSALS = {
    "tracked link, unknown position": "/t/c/{token}/7",
    "tracked link, forged token": "/t/c/forged/0",
    "followed attachment, forged token": "/t/a/forged/{attachment}",
    "followed attachment, not of this email": "/t/a/{token}/999999",
}


@pytest.mark.parametrize("name", TRACKING)
def test_a_recipients_url_sends_no_referrer_and_is_not_sniffed(wired, name):
    path, how, status, mimetype = TRACKING[name]
    path = _path(wired, path)
    response = wired.get(path) if how == "client" else wired.below_the_fast_path(path)
    assert response.status_code == status
    if mimetype:
        assert response.mimetype == mimetype
    if status == 302:
        assert response.headers["Location"] == "https://example.com/offer"
    assert security_of(response) == bare_headers(referrer="no-referrer")
    assert response.headers["Cache-Control"].startswith(("no-store", "private, no-store"))


@pytest.mark.parametrize("name", TRACKING_REFUSALS)
def test_a_recipients_url_that_is_not_found_is_a_page_without_referrer(wired, name):
    response = wired.get(_path(wired, TRACKING_REFUSALS[name]))
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert security_of(response) == page_headers(response, referrer="no-referrer")


def test_the_pixels_fast_path_answers_with_the_routes_very_headers(wired):
    path = _path(wired, "/t/o/{token}.gif")
    through_flask = []
    wired.app.before_request(lambda: through_flask.append(1))
    fast = wired.get(path)
    assert through_flask == []  # answered below Flask
    slow = wired.below_the_fast_path(path)
    assert through_flask == [1]
    assert fast.data == slow.data
    ignored = {"Date", "Server", "Vary"}  # Flask's own additions, not engage's
    assert {k: v for k, v in fast.headers.items() if k not in ignored} == {
        k: v for k, v in slow.headers.items() if k not in ignored
    }
    head = wired.app.test_client().head(PREFIX + path)
    assert head.data == b"" and security_of(head) == bare_headers(referrer="no-referrer")
    assert fast.headers["Cache-Control"] == NO_STORE


# -- framing -------------------------------------------------------------------------------------


def test_a_page_can_be_framed_by_its_own_app_only(wired):
    response = wired.get(f"/emails/{wired.email_id}", SAM)
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in policy.split("; ")
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"


# -- a host loosens them -----------------------------------------------------------------------


def test_the_config_keys_and_their_defaults():
    assert DEFAULTS["ENGAGE_SECURITY_HEADERS"] is True
    assert DEFAULTS["ENGAGE_CONTENT_SECURITY_POLICY"] == PAGE_POLICY
    assert DEFAULTS["ENGAGE_FRAME_ANCESTORS"] == ()


def test_a_host_lets_another_origin_frame_engage(wired_with):
    wired = wired_with(
        ENGAGE_FRAME_ANCESTORS=("https://portal.example.com", "https://*.example.org")
    )
    ancestors = "frame-ancestors 'self' https://portal.example.com https://*.example.org"
    page = wired.get("/", SAM)
    expected = page_headers(page)
    expected["Content-Security-Policy"] = expected["Content-Security-Policy"].replace(
        "frame-ancestors 'self'", ancestors
    )
    expected["X-Frame-Options"] = None  # it cannot name another origin; the policy does
    assert security_of(page) == expected
    pixel = wired.get(_path(wired, "/t/o/{token}.gif"))
    assert security_of(pixel) == {
        **bare_headers(referrer="no-referrer"),
        "Content-Security-Policy": BARE_POLICY.replace("frame-ancestors 'self'", ancestors),
        "X-Frame-Options": None,
    }


def test_a_host_replaces_the_policy_and_its_nonce_goes_where_it_says(wired_with):
    policy = (
        "default-src 'self' https://cdn.example.com; script-src 'self' 'nonce-{nonce}'; "
        "style-src 'self' 'nonce-{nonce}' https://cdn.example.com; frame-ancestors 'none'"
    )
    wired = wired_with(ENGAGE_CONTENT_SECURITY_POLICY=policy)
    page = wired.get("/", SAM)
    (nonce,) = NONCE_META.findall(page.get_data(as_text=True))
    assert page.headers["Content-Security-Policy"] == policy.replace("{nonce}", nonce)
    partial = wired.get("/timeline/customer/1", SAM, htmx=True)
    assert partial.headers["Content-Security-Policy"] == (
        "default-src 'self' https://cdn.example.com; script-src 'self'; "
        "style-src 'self' https://cdn.example.com; frame-ancestors 'none'"
    )
    assert page.headers["X-Frame-Options"] == "SAMEORIGIN"


@pytest.mark.parametrize("value", [None, ""], ids=["None", "empty"])
def test_a_host_turns_the_policy_off_and_keeps_the_rest(wired_with, value):
    wired = wired_with(ENGAGE_CONTENT_SECURITY_POLICY=value)
    page = wired.get("/", SAM)
    assert "trix-csp-nonce" not in page.get_data(as_text=True)  # no policy, no nonce
    assert security_of(page) == {**bare_headers(), "Content-Security-Policy": None}
    pixel = wired.get(_path(wired, "/t/o/{token}.gif"))
    assert security_of(pixel) == {
        **bare_headers(referrer="no-referrer"),
        "Content-Security-Policy": None,
    }


def test_a_host_turns_engages_security_headers_off(wired_with):
    wired = wired_with(ENGAGE_SECURITY_HEADERS=False)
    page = wired.get("/", SAM)
    assert "trix-csp-nonce" not in page.get_data(as_text=True)
    assert set(security_of(page).values()) == {None}
    pixel = wired.get(_path(wired, "/t/o/{token}.gif"))
    assert set(security_of(pixel).values()) == {None}
    # A download is never sniffed all the same: the file answer sees to that itself.
    download = wired.get(_path(wired, "/t/a/{token}/{attachment}"))
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers.get("Referrer-Policy") is None


def test_a_header_the_host_sets_wins(wired):
    @wired.app.after_request
    def _host_headers(response):  # a host's after_request runs after engage's
        response.headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
        return response

    response = wired.get("/", SAM)
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"


@pytest.mark.parametrize(
    "given",
    [
        ("https://a.example.com", "https://b.example.com"),
        "https://a.example.com https://b.example.com",
    ],
    ids=["tuple", "string"],
)
def test_frame_ancestors_come_as_a_tuple_or_a_string(given):
    from engage.web.security import security_headers

    headers = security_headers({**DEFAULTS, "ENGAGE_FRAME_ANCESTORS": given})
    assert headers["Content-Security-Policy"].endswith(
        "; frame-ancestors 'self' https://a.example.com https://b.example.com"
    )
    assert "X-Frame-Options" not in headers


@pytest.mark.parametrize(
    "origin", ["https://a.example.com; script-src *", "https://a.example.com,b", ""]
)
def test_a_frame_ancestor_that_is_no_origin_is_refused(origin):
    from engage.web.security import security_headers

    config = {**DEFAULTS, "ENGAGE_FRAME_ANCESTORS": (origin,)}
    with pytest.raises(ValueError, match="ENGAGE_FRAME_ANCESTORS"):
        security_headers(config)


# -- the host's own pages ---------------------------------------------------------------------


def test_a_host_page_with_engages_partials_is_left_to_the_host(wired):
    client = sign_in(wired.app.test_client(), SAM)
    response = client.get("/customers/1")
    assert response.status_code == 200
    assert set(security_of(response).values()) == {None}
    assert "trix-csp-nonce" not in response.get_data(as_text=True)


def test_a_host_with_a_policy_of_its_own_hands_engage_its_nonce(wired):
    with wired.app.test_request_context("/customers/1"):
        from flask import render_template_string

        html = render_template_string('{{ engage_assets(nonce="host-nonce") }}')
        assert '<meta name="trix-csp-nonce" content="host-nonce">' in html
        assert render_template_string("{{ engage_csp_nonce() }}") == "None"


# -- the demo's session cookie -----------------------------------------------------------------


def test_the_demos_session_cookie_is_same_site_lax_and_http_only(tmp_path, database_url):
    from engage.demo import create_app
    from engage.demo.models import User
    from engage.demo.models import db as demo_db

    app = create_app(
        {
            "ENGAGE_DEMO_DATA_DIR": str(tmp_path),
            "SQLALCHEMY_DATABASE_URI": database_url,
            "TESTING": True,
            "WTF_CSRF_ENABLED": False,
        }
    )
    with app.app_context():
        user_id = demo_db.session.scalars(demo_db.select(User.id)).first()
        demo_db.session.remove()
    try:
        response = app.test_client().post("/sign-in", data={"user_id": user_id})
        assert response.status_code == 302
        (cookie,) = response.headers.getlist("Set-Cookie")
        attributes = [part.strip() for part in cookie.split(";")]
        assert attributes[0].startswith("session=")
        assert "SameSite=Lax" in attributes and "HttpOnly" in attributes
    finally:
        with app.app_context():
            demo_db.engine.dispose()
