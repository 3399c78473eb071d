from __future__ import annotations

import sqlalchemy as sa
from flask_login import UserMixin
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

db = SQLAlchemy()


class User(UserMixin, db.Model):  # type: ignore[name-defined]
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    email: Mapped[str] = mapped_column(sa.String(120))
    password_hash: Mapped[str] = mapped_column(sa.String(256))
    #: "admin", "manager", "fundraiser" or "volunteer".
    role: Mapped[str] = mapped_column(sa.String(20), default="volunteer")

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class Donor(db.Model):  # type: ignore[name-defined]
    __tablename__ = "donors"

    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str] = mapped_column(sa.String(64))
    last_name: Mapped[str] = mapped_column(sa.String(64))
    email: Mapped[str | None] = mapped_column(sa.String(120), index=True)
    phone: Mapped[str | None] = mapped_column(sa.String(32))
    allow_email_tracking: Mapped[bool] = mapped_column(default=True)
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    address: Mapped[Address | None] = relationship(back_populates="donor", uselist=False)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


class Address(db.Model):  # type: ignore[name-defined]
    __tablename__ = "addresses"

    id: Mapped[int] = mapped_column(primary_key=True)
    donor_id: Mapped[int] = mapped_column(sa.ForeignKey("donors.id"))
    street: Mapped[str] = mapped_column(sa.String(120), default="")
    city: Mapped[str] = mapped_column(sa.String(64), default="")
    postal_code: Mapped[str] = mapped_column(sa.String(16), default="")
    country: Mapped[str] = mapped_column(sa.String(2), default="")

    donor: Mapped[Donor] = relationship(back_populates="address")
