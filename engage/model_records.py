"""A ready record adapter for hosts whose records are ordinary (Flask-)SQLAlchemy models.

The host declares, per record type, which attribute of its model is which (:class:`RecordType`),
and :class:`ModelAdapter` does the rest of :class:`engage.RecordAdapter`: looking a record up by
id, searching by name and email in SQL, finding records by email address, and building each
:class:`engage.Record`::

    records = ModelAdapter(
        RecordType(Donor, address="address", follow="allow_email_tracking",
                   endpoint="donors.detail"),
        RecordType(Company, name="legal_name", endpoint="companies.show"),
    )

A host whose records are not one model per type (an API, a search engine, a union of tables)
writes a :class:`engage.RecordAdapter` of its own instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from flask import current_app, has_request_context, url_for

from .context import current_engage
from .mapping import Spec, optional_text, read, text
from .records import FollowPreference, PostalAddress, Record, RecordRef

#: The parts of a :class:`PostalAddress`, each read from the attribute of the same name unless
#: the record type says otherwise.
ADDRESS_PARTS = ("street", "city", "postal_code", "region", "country")

#: engage's fields read from a same-named attribute of the model when it has one.
CONVENTIONS = {
    "name": "name",
    "first_name": "first_name",
    "email": "email",
    "phone": "phone",
    "language": "language",
    "owner": "owner_id",
    "won": "won",
    **{part: part for part in ADDRESS_PARTS},
}


def _follow(value: Any) -> FollowPreference:
    """A follow preference from a host value: a bool (allowed or not), engage's own value, a
    :class:`FollowPreference`; nothing recorded allows, anything unknown refuses (S9)."""
    if value is None:
        return FollowPreference.ALLOW
    if isinstance(value, bool):
        return FollowPreference.ALLOW if value else FollowPreference.DO_NOT_ALLOW
    try:
        return FollowPreference(str(getattr(value, "value", value)))
    except ValueError:
        # An unknown stored value must not open tracking up: treat it as a refusal.
        return FollowPreference.DO_NOT_ALLOW


def _is_sql(expression: Any) -> bool:
    """True for a column or a SQL hybrid of a model; a relationship is no column."""
    try:
        prop = getattr(expression, "property", None)
    except Exception:  # a hybrid's accessor may refuse the attribute
        prop = None
    if isinstance(prop, sa.orm.RelationshipProperty):
        return False
    return isinstance(expression, sa.ColumnElement) or hasattr(expression, "__clause_element__")


class RecordType:
    """One type of record, read from the host's model by declared attributes.

    Each field is a *spec* (:mod:`engage.mapping`): an attribute name, a dotted path through
    related objects (``"address.city"``) or a callable taking the model instance. A field left
    out is read from the model's attribute of engage's name when the model has one
    (:data:`CONVENTIONS`: ``name``, ``first_name``, ``email``, ``phone``, ``language``,
    ``owner_id``, ``won``, ``street``, ``city``, ``postal_code``, ``region``, ``country``);
    ``False`` turns a field off.

    :param model: the host's mapped class (``db.Model``); its single-column primary key is
        the record id.
    :param type: the record type in engage's references (``RecordRef("donor", "7")``);
        defaults to the model's name in lower case.
    :param name: the display name. A model without ``name`` but with ``first_name`` and
        ``last_name`` gets both, joined by a space.
    :param email: the email address; it must be a column (or a SQL hybrid) of the model, for
        engage finds records by address in SQL (:meth:`ModelAdapter.find_by_email`).
    :param follow: the *follow email* preference (SPEC S9): a bool attribute (true allows), or
        one holding ``"allow"`` / ``"do_not_allow"``; an unknown value refuses, none allows.
        Without it every record allows following.
    :param owner: the id of the host user who owns the record.
    :param won: for opportunities, whether it was won (template figures, S31).
    :param endpoint: the Flask endpoint of the record's page; its one URL argument gets the
        record's id (``url_for("donors.detail", donor_id=7)``). Or ``url``, a callable taking
        the instance and returning the URL.
    :param label: how users call the type (``"Donor"``); a string or a callable returning one
        (for a translation). Defaults to the type name, capitalised.
    :param search: the columns ``search`` matches the text against (names of the model's
        columns or SQL hybrids); defaults to those of ``name``, ``first_name``, ``last_name``
        and ``email`` the model has in SQL.
    :param template_values: further values templates may use: a mapping of name to spec
        (``{"order_number": "order_no"}``), or a callable returning such a mapping of text.
    :param where: a SQL condition a row must meet to be a record at all (``Donor.active``).

    :param address: where the postal address is: an object (a related row, say
        ``"address"``) whose attributes ``street``, ``city``, ``postal_code``, ``region`` and
        ``country`` are read, those it lacks left empty, or a :class:`engage.PostalAddress`.
        Without it the parts are read from the model's own attributes of those names. Either
        way a part may be given on its own, which wins: ``postal_code="address.zip"``.

    :class:`engage.PostalAddress`'s ``country`` is an ISO 3166-1 alpha-2 code (``"DE"``) or a
    country's name in English, as the host keeps it; the recipient's time zone is found from
    the address (S21), so the more parts, the better.
    """

    def __init__(
        self,
        model: type[Any],
        type: str | None = None,
        *,
        name: Spec | bool | None = None,
        first_name: Spec | bool | None = None,
        email: Spec | bool | None = None,
        phone: Spec | bool | None = None,
        language: Spec | bool | None = None,
        owner: Spec | bool | None = None,
        won: Spec | bool | None = None,
        follow: Spec | None = None,
        address: Spec | None = None,
        street: Spec | bool | None = None,
        city: Spec | bool | None = None,
        postal_code: Spec | bool | None = None,
        region: Spec | bool | None = None,
        country: Spec | bool | None = None,
        endpoint: str | None = None,
        url: Callable[[Any], str] | None = None,
        label: str | Callable[[], str] = "",
        search: Sequence[str] | None = None,
        template_values: Mapping[str, Spec] | Callable[[Any], Mapping[str, str]] | None = None,
        where: Any = None,
    ) -> None:
        self.model = model
        self.type = type or model.__name__.lower()
        mapper = sa.inspect(model)
        if len(mapper.primary_key) != 1:
            raise ValueError(
                f"{model.__name__} has a composite primary key: write an engage.RecordAdapter"
            )
        self._pk = mapper.primary_key[0]
        if endpoint is None and url is None:
            raise ValueError(f"RecordType({model.__name__}): give endpoint= or url=")
        self.endpoint = endpoint
        self._url = url
        self._label = label
        self.where = where
        self.follow = follow
        self.template_values = template_values
        if address is not None:
            self._check("address", address)
        self.address = address

        given = {
            "name": name,
            "first_name": first_name,
            "email": email,
            "phone": phone,
            "language": language,
            "owner": owner,
            "won": won,
            "street": street,
            "city": city,
            "postal_code": postal_code,
            "region": region,
            "country": country,
        }
        self.specs: dict[str, Spec | None] = {}
        #: The address parts given one by one, which win over those of ``address``.
        self._own_parts = {p for p in ADDRESS_PARTS if given[p] not in (None, True, False)}
        for field, spec in given.items():
            if spec is False:
                self.specs[field] = None
            elif field in ADDRESS_PARTS and address is not None and field not in self._own_parts:
                self.specs[field] = None  # read from the address object
            elif spec is None or spec is True:
                conventional = CONVENTIONS[field]
                self.specs[field] = conventional if hasattr(model, conventional) else None
            else:
                self._check(field, spec)
                self.specs[field] = spec
        if self.specs["name"] is None:
            if hasattr(model, "first_name") and hasattr(model, "last_name"):
                self.specs["name"] = _full_name
            else:
                raise ValueError(f"RecordType({model.__name__}): say which attribute is name=")

        email_spec = self.specs["email"]
        self._email_column = self._sql(email_spec) if isinstance(email_spec, str) else None
        if email_spec is not None and self._email_column is None:
            raise ValueError(
                f"RecordType({model.__name__}): email={email_spec!r} must be a column of the "
                "model, so that engage can find records by address"
            )
        if search is None:
            candidates = [self.specs["name"], "first_name", "last_name", email_spec]
            search = [c for c in dict.fromkeys(candidates) if isinstance(c, str)]
            self.search_columns = [col for c in search if (col := self._sql(c)) is not None]
        else:
            self.search_columns = []
            for column in search:
                expression = self._sql(column)
                if expression is None:
                    raise ValueError(f"search: {model.__name__}.{column} is not a column")
                self.search_columns.append(expression)

    def _check(self, field: str, spec: Spec) -> None:
        if isinstance(spec, str) and not hasattr(self.model, spec.split(".")[0]):
            raise ValueError(
                f"RecordType: {self.model.__name__} has no attribute for {field}={spec!r}"
            )

    def _sql(self, attribute: Any) -> Any:
        if not isinstance(attribute, str) or "." in attribute:
            return None
        expression = getattr(self.model, attribute, None)
        return expression if _is_sql(expression) else None

    @property
    def label(self) -> str:
        """How users call this type of record."""
        return self._label() if callable(self._label) else self._label

    def ref(self, obj: Any) -> RecordRef:
        """The reference of one instance."""
        return RecordRef(self.type, str(getattr(obj, self._pk.key)))

    def url(self, obj: Any) -> str:
        """The URL of one instance's page; a path when there is no request (a worker)."""
        if self._url is not None:
            return self._url(obj)
        assert self.endpoint is not None
        rules = list(current_app.url_map.iter_rules(self.endpoint))
        arguments = sorted(rules[0].arguments) if rules else []
        if len(arguments) != 1:
            raise ValueError(
                f"RecordType({self.model.__name__}): the endpoint {self.endpoint!r} must take "
                f"one URL argument for the record id, not {arguments}; pass url= instead"
            )
        values = {arguments[0]: getattr(obj, self._pk.key)}
        if has_request_context():
            return url_for(self.endpoint, **values)
        adapter = current_app.url_map.bind(
            current_app.config.get("SERVER_NAME") or "localhost",
            script_name=current_app.config.get("APPLICATION_ROOT") or "/",
        )
        return adapter.build(self.endpoint, values)

    def record(self, obj: Any) -> Record:
        """The :class:`engage.Record` of one instance of the model."""
        value = {field: read(obj, spec) for field, spec in self.specs.items()}
        address = self._address(obj, value)
        won = value["won"]
        return Record(
            ref=self.ref(obj),
            name=text(value["name"]),
            url=self.url(obj),
            first_name=text(value["first_name"]),
            email=optional_text(value["email"]),
            address=None if address.is_empty() else address,
            follow_preference=_follow(read(obj, self.follow)),
            owner_id=optional_text(value["owner"]),
            won=None if won is None else bool(won),
            type_label=self.label,
            language=optional_text(value["language"]),
            phone=optional_text(value["phone"]),
            template_values=self._template_values(obj),
        )

    def _address(self, obj: Any, value: dict[str, Any]) -> PostalAddress:
        parts = {part: text(value[part]) for part in ADDRESS_PARTS}
        if self.address is not None:
            holder = read(obj, self.address)
            for part in ADDRESS_PARTS:
                if part in self._own_parts or holder is None:
                    continue
                parts[part] = text(getattr(holder, part, None))
        return PostalAddress(**parts)

    def _template_values(self, obj: Any) -> dict[str, str]:
        if self.template_values is None:
            return {}
        if callable(self.template_values):
            return {k: str(v) for k, v in self.template_values(obj).items() if v is not None}
        found = {name: read(obj, spec) for name, spec in self.template_values.items()}
        return {name: str(v) for name, v in found.items() if v is not None}

    def _select(self) -> Any:
        query = sa.select(self.model)
        return query if self.where is None else query.where(self.where)

    def _identity(self, ident: str) -> Any:
        try:
            python_type = self._pk.type.python_type
        except NotImplementedError:
            return ident
        try:
            return python_type(ident)
        except (TypeError, ValueError):
            return None


def _full_name(obj: Any) -> str:
    return " ".join(p for p in (text(obj.first_name), text(obj.last_name)) if p)


def _rank(record: Record, needle: str) -> tuple[int, str]:
    # Names that start with the text come first, then a word of the name, then the address.
    name = record.name.casefold()
    if name.startswith(needle):
        score = 0
    elif any(word.startswith(needle) for word in name.split()):
        score = 1
    elif record.email and record.email.casefold().startswith(needle):
        score = 2
    else:
        score = 3
    return (score, name)


class ModelAdapter:
    """The :class:`engage.RecordAdapter` of one or more :class:`RecordType`.

    ``search`` matches every word of the text, case-insensitively, against some search column
    of a record type (so "ada love" finds first name Ada, last name Lovelace); names that start
    with the text come first. On SQLite the case of non-ASCII letters is told apart (SQLite's
    ``lower()`` knows ASCII only). ``find_by_email`` compares addresses case-insensitively.
    """

    def __init__(self, *types: RecordType) -> None:
        if not types:
            raise ValueError("ModelAdapter needs at least one RecordType")
        self.types: dict[str, RecordType] = {}
        for record_type in types:
            if record_type.type in self.types:
                raise ValueError(f"two record types are called {record_type.type!r}")
            self.types[record_type.type] = record_type

    def record(self, obj: Any) -> Record:
        """The :class:`engage.Record` of an instance of one of the models."""
        for record_type in self.types.values():
            if isinstance(obj, record_type.model):
                return record_type.record(obj)
        raise TypeError(f"{type(obj).__name__} is none of this adapter's models")

    def set_follow_preference(self, ref: RecordRef, preference: FollowPreference) -> bool:
        """Store a recipient's own opt-out (SPEC S43) on the model, and commit.

        Only a record type whose ``follow`` is a plain attribute name of the model can take
        it: a bool attribute gets ``True``/``False``, any other gets ``"allow"`` /
        ``"do_not_allow"``. Otherwise (no ``follow``, a dotted path, a callable) this answers
        ``False`` and engage keeps the opt-out in its own table.
        """
        record_type = self.types.get(ref.type)
        spec = record_type.follow if record_type is not None else None
        if record_type is None or not isinstance(spec, str) or "." in spec:
            return False
        ident = record_type._identity(ref.id)
        session = current_engage.session
        obj = (
            session.scalars(record_type._select().where(record_type._pk == ident)).one_or_none()
            if ident is not None
            else None
        )
        if obj is None or not hasattr(obj, spec):
            return False
        allowed = preference is FollowPreference.ALLOW
        setattr(obj, spec, allowed if isinstance(getattr(obj, spec), bool) else preference.value)
        session.commit()
        return True

    def get(self, ref: RecordRef) -> Record | None:
        """The record ``ref`` points at, or ``None`` for an unknown type or id."""
        record_type = self.types.get(ref.type)
        if record_type is None:
            return None
        ident = record_type._identity(ref.id)
        if ident is None:
            return None
        session = current_engage.session
        if record_type.where is None:
            obj = session.get(record_type.model, ident)
        else:
            obj = session.scalars(
                record_type._select().where(record_type._pk == ident)
            ).one_or_none()
        return None if obj is None else record_type.record(obj)

    def search(self, text: str, *, limit: int = 10) -> Sequence[Record]:
        """Records whose search columns contain every word of ``text``, best first."""
        words = text.split()
        if not words or limit <= 0:
            return []
        needle = " ".join(words).casefold()
        found: list[Record] = []
        session = current_engage.session
        for record_type in self.types.values():
            columns = record_type.search_columns
            if not columns:
                continue
            condition = sa.and_(
                *(sa.or_(*(c.icontains(w, autoescape=True) for c in columns)) for w in words)
            )
            starts = sa.or_(*(c.istartswith(words[0], autoescape=True) for c in columns))
            query = (
                record_type._select()
                .where(condition)
                .order_by(sa.case((starts, 0), else_=1), record_type._pk)
                .limit(limit)
            )
            found.extend(record_type.record(obj) for obj in session.scalars(query))
        found.sort(key=lambda record: _rank(record, needle))
        return found[:limit]

    def find_by_email(self, address: str) -> Sequence[Record]:
        """Every record whose email is ``address``, ignoring case."""
        wanted = address.strip().lower()
        if not wanted:
            return []
        found: list[Record] = []
        session = current_engage.session
        for record_type in self.types.values():
            column = record_type._email_column
            if column is None:
                continue
            query = (
                record_type._select()
                .where(sa.func.lower(column) == wanted)
                .order_by(record_type._pk)
            )
            found.extend(record_type.record(obj) for obj in session.scalars(query))
        return found
