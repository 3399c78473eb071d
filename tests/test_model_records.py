"""The ready record adapter (RecordType, ModelAdapter) and the user mapping (UserMapping):
a host declares which attribute is which, engage does get, search and find_by_email."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from engage import (
    Engage,
    FollowPreference,
    ModelAdapter,
    PostalAddress,
    RecordRef,
    RecordType,
    Role,
    UserMapping,
)


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Donor(db.Model):  # type: ignore[name-defined]
    __tablename__ = "mr_donor"

    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str] = mapped_column(sa.String(50))
    last_name: Mapped[str] = mapped_column(sa.String(50))
    email: Mapped[str | None] = mapped_column(sa.String(200))
    language: Mapped[str | None] = mapped_column(sa.String(5))
    owner_id: Mapped[int | None] = mapped_column()
    allow_tracking: Mapped[bool] = mapped_column(default=True)
    active: Mapped[bool] = mapped_column(default=True)
    address: Mapped[Address | None] = relationship(uselist=False)


class Address(db.Model):  # type: ignore[name-defined]
    __tablename__ = "mr_address"

    id: Mapped[int] = mapped_column(primary_key=True)
    donor_id: Mapped[int] = mapped_column(sa.ForeignKey("mr_donor.id"))
    street: Mapped[str] = mapped_column(sa.String(100), default="")
    city: Mapped[str] = mapped_column(sa.String(100), default="")
    postcode: Mapped[str] = mapped_column(sa.String(20), default="")
    country: Mapped[str] = mapped_column(sa.String(2), default="")


class Company(db.Model):  # type: ignore[name-defined]
    __tablename__ = "mr_company"

    code: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    legal_name: Mapped[str] = mapped_column(sa.String(100))
    email: Mapped[str | None] = mapped_column(sa.String(200))
    privacy: Mapped[str] = mapped_column(sa.String(20), default="allow")
    won_deal: Mapped[bool | None] = mapped_column()
    order_no: Mapped[str | None] = mapped_column(sa.String(20))


donors = RecordType(
    Donor,
    street="address.street",
    city="address.city",
    postal_code="address.postcode",
    country="address.country",
    follow="allow_tracking",
    endpoint="donor_page",
    where=Donor.active,
)
companies = RecordType(
    Company,
    "account",
    name="legal_name",
    follow="privacy",
    won="won_deal",
    url=lambda c: f"/accounts/{c.code}",
    label="Account",
    template_values={"order_number": "order_no"},
)
adapter = ModelAdapter(donors, companies)


class NoUser:
    def __call__(self):
        return None


@pytest.fixture
def app(database_url):
    app = Flask(__name__)
    app.config.update(SECRET_KEY="x", SQLALCHEMY_DATABASE_URI=database_url)
    db.init_app(app)
    Engage(app, db=db, records=adapter, current_user=NoUser())
    app.add_url_rule("/donors/<int:donor_id>", "donor_page", lambda donor_id: "")
    with app.app_context():
        db.create_all()
        ada = Donor(
            id=1,
            first_name="Ada",
            last_name="Lovelace",
            email="Ada@Example.com",
            language="en",
            owner_id=7,
        )
        db.session.add_all(
            [
                ada,
                Address(
                    donor_id=1,
                    street="12 St James's Square",
                    city="London",
                    postcode="SW1Y 4LB",
                    country="GB",
                ),
                Donor(
                    id=2,
                    first_name="Grace",
                    last_name="Hopper",
                    email="grace@example.com",
                    allow_tracking=False,
                ),
                Donor(
                    id=3,
                    first_name="Adam",
                    last_name="Smith",
                    email="adam@example.com",
                    active=False,
                ),
                Donor(id=4, first_name="Alan", last_name="Adams", email="alan@example.com"),
                Company(
                    code="ACME",
                    legal_name="Acme 100% Ltd",
                    email="ada@example.com",
                    privacy="do_not_allow",
                    won_deal=True,
                    order_no="SO-1",
                ),
                Company(code="BOLT", legal_name="Bolt Ada", email=None, privacy="bogus"),
            ]
        )
        db.session.commit()
        yield app
        db.session.remove()
        db.drop_all()


def names(records) -> list[str]:
    return [r.name for r in records]


def test_a_record_is_read_by_declaration_and_convention(app):
    with app.test_request_context():
        ada = adapter.get(RecordRef("donor", "1"))
    assert ada is not None
    assert ada.name == "Ada Lovelace" and ada.first_name == "Ada"
    assert ada.email == "Ada@Example.com" and ada.language == "en" and ada.owner_id == "7"
    assert ada.address == PostalAddress(
        street="12 St James's Square", city="London", postal_code="SW1Y 4LB", country="GB"
    )
    assert ada.follow_preference is FollowPreference.ALLOW
    assert ada.url == "/donors/1" and ada.label == "Donor" and ada.won is None


def test_the_address_is_read_from_a_related_object_and_a_part_may_be_given_on_its_own(app):
    by_object = RecordType(Donor, "d2", address="address", postal_code="address.postcode", url=str)
    from_property = RecordType(
        Donor, "d3", address=lambda d: PostalAddress(city="Paris", country="FR"), url=str
    )
    with app.app_context():
        ada = db.session.get(Donor, 1)
        assert by_object.record(ada).address == PostalAddress(
            street="12 St James's Square", city="London", postal_code="SW1Y 4LB", country="GB"
        )
        assert from_property.record(ada).address == PostalAddress(city="Paris", country="FR")
        assert by_object.record(db.session.get(Donor, 2)).address is None


def test_outside_a_request_the_url_is_the_path_a_worker_can_build(app):
    with app.app_context():
        assert adapter.get(RecordRef("donor", "2")).url == "/donors/2"


def test_follow_won_labels_string_keys_and_template_values(app):
    with app.app_context():
        grace = adapter.get(RecordRef("donor", "2"))
        acme = adapter.get(RecordRef("account", "ACME"))
        bolt = adapter.get(RecordRef("account", "BOLT"))
    assert grace.follow_preference is FollowPreference.DO_NOT_ALLOW and grace.address is None
    assert acme.follow_preference is FollowPreference.DO_NOT_ALLOW
    assert acme.won is True and acme.label == "Account" and acme.url == "/accounts/ACME"
    assert acme.template_values == {"order_number": "SO-1"}
    # An unknown stored preference refuses following rather than allowing it.
    assert bolt.follow_preference is FollowPreference.DO_NOT_ALLOW and bolt.email is None


def test_a_recipients_own_opt_out_is_written_to_the_models_follow_attribute(app):
    from engage.records import FollowPreferenceWriter

    assert isinstance(adapter, FollowPreferenceWriter)
    with app.app_context():
        assert adapter.get(RecordRef("donor", "1")).follow_preference is FollowPreference.ALLOW
        assert adapter.set_follow_preference(RecordRef("donor", "1"), FollowPreference.DO_NOT_ALLOW)
        donor = adapter.get(RecordRef("donor", "1"))
        assert donor.follow_preference is FollowPreference.DO_NOT_ALLOW
        assert adapter.set_follow_preference(RecordRef("account", "ACME"), FollowPreference.ALLOW)
        assert adapter.get(RecordRef("account", "ACME")).follow_preference is FollowPreference.ALLOW
        # Nothing to write to: an unknown type, a missing row, a row the condition excludes.
        assert not adapter.set_follow_preference(RecordRef("planet", "1"), FollowPreference.ALLOW)
        assert not adapter.set_follow_preference(RecordRef("donor", "999"), FollowPreference.ALLOW)
        assert not adapter.set_follow_preference(RecordRef("donor", "3"), FollowPreference.ALLOW)


def test_get_is_none_for_unknown_types_ids_and_rows_the_condition_excludes(app):
    with app.app_context():
        assert adapter.get(RecordRef("planet", "1")) is None
        assert adapter.get(RecordRef("donor", "x")) is None
        assert adapter.get(RecordRef("donor", "999")) is None
        assert adapter.get(RecordRef("donor", "3")) is None  # where=Donor.active


def test_search_matches_every_word_in_some_column_ignoring_case_best_first(app):
    with app.app_context():
        assert names(adapter.search("ada love")) == ["Ada Lovelace"]
        # Names that start with the text first, then a word of the name, then the rest.
        assert names(adapter.search("ADA")) == [
            "Ada Lovelace",
            "Alan Adams",
            "Bolt Ada",
            "Acme 100% Ltd",  # by its address
        ]
        assert names(adapter.search("ada", limit=1)) == ["Ada Lovelace"]
        assert names(adapter.search("hopper@")) == []
        assert names(adapter.search("grace@example")) == ["Grace Hopper"]
        assert names(adapter.search("100%")) == ["Acme 100% Ltd"]  # % is no wildcard
        assert names(adapter.search("   ")) == []
        assert names(adapter.search("Adam")) == ["Alan Adams"]  # Adam Smith is inactive


def test_find_by_email_ignores_case_across_types(app):
    with app.app_context():
        found = adapter.find_by_email("  ADA@example.com ")
    assert sorted(str(r.ref) for r in found) == ["account:ACME", "donor:1"]


def test_a_declaration_that_cannot_work_is_refused_at_once():
    with pytest.raises(ValueError, match="endpoint= or url="):
        RecordType(Donor)
    with pytest.raises(ValueError, match="no attribute for city='adress.city'"):
        RecordType(Donor, endpoint="x", city="adress.city")
    with pytest.raises(ValueError, match="must be a column"):
        RecordType(Donor, endpoint="x", email="address.street")
    with pytest.raises(ValueError, match="is not a column"):
        RecordType(Donor, endpoint="x", search=("address",))
    with pytest.raises(ValueError, match="say which attribute is name"):
        RecordType(Address, endpoint="x")
    with pytest.raises(ValueError, match="two record types"):
        ModelAdapter(donors, RecordType(Donor, endpoint="x"))


def test_the_user_mapping_maps_the_hosts_role_values():
    class HostUser:
        id = 5
        username = "sam"
        email = "sam@example.com"
        role = "manager"
        region = "north"

    mapping = UserMapping(
        name="username",
        roles="role",
        role_map={"manager": ["sales_manager", "admin"], "rep": "salesperson"},
        team="region",
    )
    user = mapping.user(HostUser())
    assert (user.id, user.name, user.email, user.team) == ("5", "sam", "sam@example.com", "north")
    assert user.roles == {Role.SALES_MANAGER, Role.ADMIN} and user.timezone is None

    HostUser.role = "volunteer"  # a value the map lacks gives no role, and no error
    assert mapping.user(HostUser()).roles == frozenset()
    listed = UserMapping(roles=lambda u: ["salesperson", "cook"], role_map=None)
    assert listed.user(HostUser()).roles == {Role.SALESPERSON}
