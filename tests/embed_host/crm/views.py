from __future__ import annotations

from typing import Any

import click
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired

from .models import Address, Donor, User, db

bp = Blueprint("donors", __name__)


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])
    submit = SubmitField("Sign in")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    form = LoginForm()
    if form.validate_on_submit():
        user = db.session.scalar(db.select(User).filter_by(username=form.username.data))
        if user is None or not user.check_password(form.password.data or ""):
            flash("Invalid username or password", "danger")
            return redirect(url_for("donors.login"))
        login_user(user)
        return redirect(request.args.get("next") or url_for("donors.dashboard"))
    return render_template("login.html", form=form)


@bp.post("/logout")
def logout() -> Any:
    logout_user()
    return redirect(url_for("donors.login"))


@bp.get("/")
@login_required
def dashboard() -> str:
    donors = db.session.scalars(
        db.select(Donor).filter_by(owner_id=current_user.id).order_by(Donor.last_name)
    )
    return render_template("dashboard.html", donors=list(donors))


@bp.get("/donors/<int:donor_id>")
@login_required
def detail(donor_id: int) -> str:
    donor = db.session.get(Donor, donor_id) or abort(404)
    return render_template("donor.html", donor=donor)


@bp.cli.command("seed")
def seed() -> None:
    """Add the staff and a few donors."""
    people = [("sam", "sam@donors.example", "fundraiser"), ("mia", "mia@donors.example", "manager")]
    for username, email, role in people:
        user = User(username=username, email=email, role=role)
        user.set_password("secret")
        db.session.add(user)
    db.session.flush()
    ada = Donor(first_name="Ada", last_name="Lovelace", email="ada@example.org", owner_id=1)
    ada.address = Address(street="12 St James's Square", city="London", country="GB")
    grace = Donor(first_name="Grace", last_name="Hopper", email="grace@example.org", owner_id=1)
    db.session.add_all([ada, grace])
    db.session.commit()
    click.echo("seeded")
