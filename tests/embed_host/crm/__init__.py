"""A donor CRM as a host team finds it: an application factory, a blueprint, its own users
and donors, Flask-Login, app-wide CSRFProtect, Flask-Migrate with a revision of its own.

tests/test_embed.py mounts email engagement into it as the README's 10-minute walkthrough
says; the lines that mounting added are the README's, and only those.
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_wtf import CSRFProtect

from engage.migrations import configure_flask_migrate

from .config import Config
from .email_engagement import engage
from .models import User, db

login = LoginManager()
login.login_view = "donors.login"
migrate = Migrate()
configure_flask_migrate(migrate)
csrf = CSRFProtect()


@login.user_loader
def load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id))


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_object(Config)
    app.config.from_prefixed_env()
    app.config.update(config or {})
    db.init_app(app)
    migrate.init_app(app, db)
    login.init_app(app)
    csrf.init_app(app)
    engage.init_app(app)

    from . import views

    app.register_blueprint(views.bp)
    return app
