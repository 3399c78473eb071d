"""The demo CRM: a small Flask CRM that hosts engage like any other host app would.

It has its own users, accounts, contacts, leads and opportunities (SQLite by default), signs
users in with Flask-Login, and mounts engage through the public API only. Run the whole thing
(web app, embedded Redis, SMTP sink and mailbox, RQ worker and cron) with::

    python -m engage.demo

or load just the web app, as the RQ worker does, with ``FLASK_APP="engage.demo:create_app()"``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, has_request_context, request
from flask_babel import Babel, get_locale
from flask_babel import lazy_gettext as _l
from flask_login import LoginManager, current_user

from engage import Engage

from .models import User, db, prepare_engine
from .records import DemoRecords
from .seed import seed

#: Where the demo keeps its database, attachments and secret key unless told otherwise.
DEFAULT_DATA_DIR = "./demo-data"

#: The languages a browser can ask for (Accept-Language): engage's pages and partials come in
#: both; the demo's own pages stay English. Without a match, Flask-Babel's default (English).
LANGUAGES = ("en", "de")


def _setting(config: Mapping[str, Any], key: str, env: str, default: Any = None) -> Any:
    # The mapping given to create_app wins, then the environment (how the runner and the RQ
    # worker pass settings on), then the default.
    if config.get(key) is not None:
        return config[key]
    return os.environ.get(env) or default


def _secret_key(data_dir: Path) -> str:
    """The demo's secret key, made once and kept in the data folder.

    Keeping it means sessions survive a restart, and the web server and the worker (a separate
    process) sign things with the same key.
    """
    path = data_dir / "secret_key"
    if path.is_file() and (key := path.read_text().strip()):
        return key
    key = secrets.token_hex(32)
    # Create the file readable by its owner only; another process may have won the race.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip() or key
    with os.fdopen(fd, "w") as out:
        out.write(key)
    return key


def _inbound_token(secret_key: str | bytes) -> str:
    """The bearer token of engage's inbound endpoint, derived from the secret key.

    The mailbox's Reply button hands each reply to that endpoint over HTTP, the way a mail
    provider's inbound webhook would, so the demo needs the token a real host would configure.
    Deriving it from the kept secret key gives every process of the demo the same token
    without another file to keep.
    """
    key = secret_key if isinstance(secret_key, bytes) else secret_key.encode()
    return hmac.new(key, b"engage demo inbound replies", hashlib.sha256).hexdigest()


def _select_locale() -> str | None:
    # The browser's preferred language among LANGUAGES (Accept-Language), else the default.
    # Jobs of the RQ worker run without a request, and so in the default language.
    if not has_request_context():
        return None
    return request.accept_languages.best_match(LANGUAGES)


def _select_timezone() -> str | None:
    # Times on the demo's pages are shown in the signed-in user's own zone.
    if current_user and current_user.is_authenticated:
        return current_user.timezone
    return None


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the demo CRM app, create its tables and seed it when the database is empty.

    Settings are read from ``config`` first, then from environment variables, then defaults:

    - ``ENGAGE_DEMO_DATA_DIR`` (env ``ENGAGE_DEMO_DATA_DIR``, default ``./demo-data``): the folder
      holding ``demo.sqlite3``, attachments and the ``secret_key`` file;
    - ``SQLALCHEMY_DATABASE_URI`` (env ``ENGAGE_DEMO_DATABASE_URL``): another database;
    - ``ENGAGE_REDIS_URL``, ``ENGAGE_SMTP_URL`` and ``ENGAGE_PUBLIC_URL`` (env of the same
      names; the runner sets the last to the address it serves on, so emails are followed);
    - ``SECRET_KEY`` (env ``SECRET_KEY``, else kept in the data folder);
    - ``ENGAGE_INBOUND_TOKEN`` (env of the same name, else derived from the secret key): the
      token the mailbox's Reply button gives engage's inbound endpoint.

    Every other key of ``config`` (``TESTING``, ``WTF_CSRF_ENABLED``, …) goes into
    ``app.config`` as it is.

    :param config: settings that take precedence over the environment.
    """
    config = dict(config or {})
    data_dir = Path(
        _setting(config, "ENGAGE_DEMO_DATA_DIR", "ENGAGE_DEMO_DATA_DIR", DEFAULT_DATA_DIR)
    ).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)

    app = Flask(__name__, instance_path=str(data_dir / "instance"))
    app.config.update(
        ENGAGE_URL_PREFIX="/engage",
        ENGAGE_SERVICE_WORKER_SCOPE="/",
        ENGAGE_APP_START_URL="/",
        ENGAGE_APP_NAME="engage demo CRM",
        ENGAGE_ATTACHMENT_DIR=str(data_dir / "attachments"),
        # What engage's README asks of every host: the session cookie stays out of other
        # sites' requests (no cross-site form posts riding on it) and out of scripts' reach.
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_HTTPONLY=True,
    )
    app.config.update(config)
    app.config.update(
        ENGAGE_DEMO_DATA_DIR=str(data_dir),
        SECRET_KEY=_setting(config, "SECRET_KEY", "SECRET_KEY") or _secret_key(data_dir),
        SQLALCHEMY_DATABASE_URI=_setting(
            config,
            "SQLALCHEMY_DATABASE_URI",
            "ENGAGE_DEMO_DATABASE_URL",
            f"sqlite:///{data_dir / 'demo.sqlite3'}",
        ),
    )
    for key in ("ENGAGE_REDIS_URL", "ENGAGE_SMTP_URL", "ENGAGE_PUBLIC_URL"):
        if (value := _setting(config, key, key)) is not None:
            app.config[key] = value
    app.config["ENGAGE_INBOUND_TOKEN"] = _setting(
        config, "ENGAGE_INBOUND_TOKEN", "ENGAGE_INBOUND_TOKEN"
    ) or _inbound_token(app.config["SECRET_KEY"])

    db.init_app(app)
    Babel(app, locale_selector=_select_locale, timezone_selector=_select_timezone)
    app.jinja_env.globals["demo_locale"] = lambda: str(get_locale() or "en")

    login_manager = LoginManager(app)
    login_manager.login_view = "demo.sign_in"
    login_manager.login_message = _l("Sign in to see this page.")
    login_manager.login_message_category = "info"

    @login_manager.user_loader
    def _load_user(user_id: str) -> User | None:
        try:
            return db.session.get(User, int(user_id))
        except ValueError:
            return None

    engage = Engage(app, db=db, records=DemoRecords())

    from .views import blueprint

    app.register_blueprint(blueprint)

    with app.app_context():
        prepare_engine(db.engine)
        engage.create_all()
        db.create_all()
        seed()
    return app
