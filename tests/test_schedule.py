"""The recommended delivery time (SPEC S20, S24): plain values in, a recommendation out."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from engage.best_time import (
    Reason,
    Recommendation,
    WorkingHours,
    city_of,
    local_hour_histogram,
    public_holidays,
    recommend,
    usual_open_hour,
    working_hours_from_config,
)
from engage.config import DEFAULTS


def local(zone: str, *args: int) -> datetime:
    """A wall-clock time in a named zone."""
    return datetime(*args, tzinfo=ZoneInfo(zone))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def for_berlin(now: datetime, **options) -> Recommendation:
    """A Berlin sender writing to a Berlin recipient."""
    return recommend(
        now=now,
        sender_zone="Europe/Berlin",
        recipient_zone="Europe/Berlin",
        recipient_count=1,
        **options,
    )


def test_the_zone_database_knows_the_zones_these_tests_use():
    for zone in ("Europe/Berlin", "America/New_York", "Australia/Sydney", "Pacific/Auckland"):
        assert ZoneInfo(zone).key == zone


# -- The working day --------------------------------------------------------------------------


def test_inside_working_hours_the_recommendation_is_now():
    now = local("Europe/Berlin", 2026, 6, 16, 10, 0)  # a Tuesday, CEST (UTC+2)
    result = for_berlin(now)
    assert result.reason == "now_in_hours"
    assert result.at == utc(2026, 6, 16, 8, 0)
    assert result.at.tzinfo is UTC
    assert result.recipient_local == now
    assert result.explanation == (
        "Now, Tue 10:00 in Berlin (your Tue 10:00): within the recipient's working day"
    )


def test_the_first_minute_of_the_working_day_is_inside_it():
    result = for_berlin(local("Europe/Berlin", 2026, 6, 16, 8, 0))
    assert result.reason == "now_in_hours"


def test_after_hours_the_recommendation_is_the_next_morning_at_eight():
    result = for_berlin(local("Europe/Berlin", 2026, 6, 16, 18, 30))
    assert result.reason == "next_best_time"
    assert result.at == utc(2026, 6, 17, 6, 0)
    assert result.recipient_local == local("Europe/Berlin", 2026, 6, 17, 8, 0)
    assert result.explanation == (
        "Wed 08:00 in Berlin (your Wed 08:00): outside the recipient's working day"
    )


def test_before_the_working_day_starts_the_recommendation_is_later_today():
    result = for_berlin(local("Europe/Berlin", 2026, 6, 16, 6, 15))
    assert result.reason == "next_best_time"
    assert result.at == utc(2026, 6, 16, 6, 0)


def test_the_end_of_the_working_day_is_outside_it_and_friday_evening_moves_to_monday():
    result = for_berlin(local("Europe/Berlin", 2026, 6, 19, 17, 0))  # Friday 17:00
    assert result.reason == "next_best_time"
    assert result.recipient_local == local("Europe/Berlin", 2026, 6, 22, 8, 0)
    assert result.explanation.startswith("Mon 08:00 in Berlin")


def test_a_saturday_moves_to_monday():
    result = for_berlin(local("Europe/Berlin", 2026, 6, 20, 11, 0))
    assert result.at == utc(2026, 6, 22, 6, 0)


def test_a_sunday_before_dawn_moves_to_monday_not_to_sunday_morning():
    result = for_berlin(local("Europe/Berlin", 2026, 6, 21, 5, 0))
    assert result.at == utc(2026, 6, 22, 6, 0)


def test_the_organisation_s_own_working_hours_and_days_apply():
    sunday_to_thursday = WorkingHours(
        start=time(9, 30), end=time(18, 0), weekdays=frozenset({6, 0, 1, 2, 3})
    )
    friday = local("Asia/Jerusalem", 2026, 6, 19, 10, 0)
    result = recommend(
        now=friday,
        sender_zone="Asia/Jerusalem",
        recipient_zone="Asia/Jerusalem",
        recipient_count=1,
        hours=sunday_to_thursday,
    )
    assert result.recipient_local == local("Asia/Jerusalem", 2026, 6, 21, 9, 30)
    assert result.explanation.startswith("Sun 09:30 in Jerusalem")


@pytest.mark.parametrize(
    "options",
    [
        {"start": time(17, 0), "end": time(8, 0)},
        {"start": time(9, 0), "end": time(9, 0)},
        {"weekdays": frozenset()},
        {"weekdays": frozenset({5, 7})},
    ],
)
def test_working_hours_that_make_no_sense_are_refused(options):
    with pytest.raises(ValueError):
        WorkingHours(**options)


# -- Public holidays --------------------------------------------------------------------------


def test_christmas_in_germany_is_skipped():
    # Thursday 24 December 2026 evening; the 25th and 26th are holidays, the 27th a Sunday.
    result = for_berlin(local("Europe/Berlin", 2026, 12, 24, 18, 0), country="DE")
    assert result.reason == "next_best_time"
    assert result.at == utc(2026, 12, 28, 7, 0)
    assert result.explanation == (
        "Mon 08:00 in Berlin (your Mon 08:00): outside the recipient's working day"
    )


def test_without_a_country_christmas_is_a_working_day():
    result = for_berlin(local("Europe/Berlin", 2026, 12, 24, 18, 0))
    assert result.at == utc(2026, 12, 25, 7, 0)


def test_during_a_holiday_the_recommendation_is_not_now():
    result = for_berlin(local("Europe/Berlin", 2026, 12, 25, 10, 0), country="DE")
    assert result.reason == "next_best_time"
    assert result.at == utc(2026, 12, 28, 7, 0)


def test_an_observed_us_holiday_is_skipped():
    # 4 July 2027 is a Sunday, observed on Monday the 5th.
    result = recommend(
        now=local("America/New_York", 2027, 7, 2, 18, 0),
        sender_zone="America/New_York",
        recipient_zone="America/New_York",
        recipient_count=1,
        country="US",
    )
    assert result.at == utc(2027, 7, 6, 12, 0)  # Tuesday 08:00 EDT
    assert result.explanation.startswith("Tue 08:00 in New York")


def test_australia_day_is_skipped():
    result = recommend(
        now=local("Australia/Sydney", 2027, 1, 25, 17, 30),
        sender_zone="Australia/Sydney",
        recipient_zone="Australia/Sydney",
        recipient_count=1,
        country="AU",
    )
    assert result.at == utc(2027, 1, 26, 21, 0)  # Wednesday 27th 08:00 AEDT (UTC+11)
    assert result.explanation.startswith("Wed 08:00 in Sydney")


def test_an_unknown_country_has_no_holidays():
    result = for_berlin(local("Europe/Berlin", 2026, 12, 24, 18, 0), country="ZZ")
    assert result.at == utc(2026, 12, 25, 7, 0)
    assert public_holidays("ZZ", 2026) == frozenset()


def test_a_country_code_is_read_in_any_case():
    result = for_berlin(local("Europe/Berlin", 2026, 12, 24, 18, 0), country=" de ")
    assert result.at == utc(2026, 12, 28, 7, 0)


def test_holiday_calendars_are_cached_per_country_and_year():
    assert public_holidays("de", 2026) is public_holidays("DE", 2026)
    assert date(2026, 12, 25) in public_holidays("DE", 2026)
    assert date(2027, 12, 25) not in public_holidays("DE", 2026)
    assert public_holidays(None, 2026) == frozenset()


# -- No recommendation ------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 2, 7])
def test_anything_but_one_recipient_gets_no_recommendation(count):
    result = recommend(
        now=utc(2026, 6, 16, 8, 0),
        sender_zone="Europe/Berlin",
        recipient_zone="Europe/Berlin",
        recipient_count=count,
    )
    assert result == Recommendation(
        at=None,
        reason=Reason.SEVERAL_RECIPIENTS,
        recipient_local=None,
        sender_local=None,
        explanation="No recommendation: the email has several recipients",
    )
    assert not result.recommended


@pytest.mark.parametrize("zone", [None, "", "Mars/Olympus_Mons"])
def test_a_recipient_without_a_known_zone_gets_no_recommendation(zone):
    result = recommend(
        now=utc(2026, 6, 16, 8, 0),
        sender_zone="Europe/Berlin",
        recipient_zone=zone,
        recipient_count=1,
    )
    assert result.at is None and result.recipient_local is None and result.sender_local is None
    assert result.reason == "no_timezone"
    assert result.explanation == "No recommendation: the recipient's time zone is unknown"


def test_a_recipient_without_an_address_gets_no_recommendation():
    result = recommend(
        now=utc(2026, 6, 16, 8, 0),
        sender_zone="Europe/Berlin",
        recipient_zone=None,
        recipient_count=1,
        has_address=False,
    )
    assert result.at is None
    assert result.reason == "no_address"
    assert result.explanation == "No recommendation: the recipient has no address"


def test_several_recipients_outrank_a_missing_address():
    result = recommend(
        now=utc(2026, 6, 16, 8, 0),
        sender_zone="Europe/Berlin",
        recipient_zone=None,
        recipient_count=3,
        has_address=False,
    )
    assert result.reason == "several_recipients"


def test_a_naive_now_is_refused():
    with pytest.raises(ValueError, match="time zone"):
        for_berlin(datetime(2026, 6, 16, 10, 0))


# -- The hour they usually open mail ----------------------------------------------------------

USUALLY_TEN = (10, 10, 10, 14, 14)


def test_enough_opens_make_their_usual_hour_the_recommendation():
    result = for_berlin(local("Europe/Berlin", 2026, 6, 16, 9, 0), open_hours=USUALLY_TEN)
    assert result.reason == "usual_open_hour"
    assert result.at == utc(2026, 6, 16, 8, 0)
    assert result.explanation == (
        "Tue 10:00 in Berlin (your Tue 10:00): when they usually open mail"
    )


def test_once_their_usual_hour_has_passed_it_is_the_next_working_day_s():
    result = for_berlin(local("Europe/Berlin", 2026, 6, 19, 11, 0), open_hours=USUALLY_TEN)
    assert result.reason == "usual_open_hour"
    assert result.recipient_local == local("Europe/Berlin", 2026, 6, 22, 10, 0)  # Monday


def test_within_their_usual_hour_the_recommendation_is_now():
    now = local("Europe/Berlin", 2026, 6, 16, 10, 20)
    result = for_berlin(now, open_hours=USUALLY_TEN)
    assert result.reason == "usual_open_hour"
    assert result.at == now
    assert result.explanation == (
        "Now, Tue 10:20 in Berlin (your Tue 10:20): when they usually open mail"
    )


def test_their_usual_hour_skips_holidays():
    result = for_berlin(
        local("Europe/Berlin", 2026, 12, 24, 11, 0), open_hours=USUALLY_TEN, country="DE"
    )
    assert result.recipient_local == local("Europe/Berlin", 2026, 12, 28, 10, 0)


def test_fewer_opens_than_the_minimum_leave_the_working_hours_rule():
    now = local("Europe/Berlin", 2026, 6, 16, 9, 0)
    assert for_berlin(now, open_hours=USUALLY_TEN[:4]).reason == "now_in_hours"
    assert for_berlin(now, open_hours=USUALLY_TEN[:4], min_opens=4).reason == "usual_open_hour"


def test_a_usual_hour_outside_working_hours_is_ignored():
    late_reader = (21, 21, 21, 21, 21, 9)
    result = for_berlin(local("Europe/Berlin", 2026, 6, 16, 18, 0), open_hours=late_reader)
    assert result.reason == "next_best_time"
    assert result.recipient_local == local("Europe/Berlin", 2026, 6, 17, 8, 0)


def test_the_last_hour_of_the_working_day_counts_as_inside_it():
    result = for_berlin(local("Europe/Berlin", 2026, 6, 16, 9, 0), open_hours=(16,) * 5)
    assert result.recipient_local == local("Europe/Berlin", 2026, 6, 16, 16, 0)


def test_the_usual_hour_is_the_most_common_and_the_earliest_on_a_tie():
    assert usual_open_hour((15, 9, 15, 9, 12), min_opens=5) == 9
    assert usual_open_hour((15, 15, 9, 12, 13), min_opens=5) == 15
    assert usual_open_hour((), min_opens=0) is None
    with pytest.raises(ValueError):
        usual_open_hour((9, 24), min_opens=1)


def test_open_times_become_local_hours_either_side_of_a_daylight_saving_change():
    # 13:00 UTC is 08:00 in New York before 8 March 2026 (EST) and 09:00 after it (EDT).
    opens = [utc(2026, 3, 6, 13, 0), utc(2026, 3, 10, 13, 0), datetime(2026, 3, 10, 20, 30)]
    assert local_hour_histogram(opens, "America/New_York") == [8, 9, 16]
    assert local_hour_histogram([], "America/New_York") == []


# -- Time zones -------------------------------------------------------------------------------


def berlin_to_new_york(now: datetime) -> Recommendation:
    return recommend(
        now=now,
        sender_zone="Europe/Berlin",
        recipient_zone="America/New_York",
        recipient_count=1,
    )


def test_a_recipient_west_of_the_sender_is_recommended_their_morning():
    result = recommend(
        now=local("Europe/Berlin", 2026, 6, 15, 9, 0),  # Monday, 00:00 in Los Angeles
        sender_zone="Europe/Berlin",
        recipient_zone="America/Los_Angeles",
        recipient_count=1,
    )
    assert result.at == utc(2026, 6, 15, 15, 0)
    assert result.sender_local == local("Europe/Berlin", 2026, 6, 15, 17, 0)
    assert result.explanation == (
        "Mon 08:00 in Los Angeles (your Mon 17:00): outside the recipient's working day"
    )


def test_a_recipient_east_of_the_sender_is_recommended_their_next_morning():
    result = recommend(
        now=local("America/Chicago", 2026, 6, 15, 13, 0),  # Monday, 03:00 Tuesday in Tokyo
        sender_zone="America/Chicago",
        recipient_zone="Asia/Tokyo",
        recipient_count=1,
    )
    assert result.at == utc(2026, 6, 15, 23, 0)
    assert result.explanation == (
        "Tue 08:00 in Tokyo (your Mon 18:00): outside the recipient's working day"
    )


def test_new_york_is_five_hours_behind_berlin_between_the_spring_switches():
    # The US switched on 8 March 2026, Europe switches on 29 March.
    result = berlin_to_new_york(local("Europe/Berlin", 2026, 3, 16, 14, 0))
    assert result.reason == "now_in_hours"
    assert result.explanation == (
        "Now, Mon 09:00 in New York (your Mon 14:00): within the recipient's working day"
    )
    result = berlin_to_new_york(local("Europe/Berlin", 2026, 3, 16, 23, 30))
    assert result.at == utc(2026, 3, 17, 12, 0)
    assert result.explanation == (
        "Tue 08:00 in New York (your Tue 13:00): outside the recipient's working day"
    )


def test_new_york_is_six_hours_behind_berlin_outside_the_gaps():
    before = berlin_to_new_york(local("Europe/Berlin", 2026, 3, 2, 23, 30))  # both standard
    assert before.at == utc(2026, 3, 3, 13, 0)
    assert before.explanation.startswith("Tue 08:00 in New York (your Tue 14:00)")
    after = berlin_to_new_york(local("Europe/Berlin", 2026, 3, 30, 23, 30))  # both summer
    assert after.at == utc(2026, 3, 31, 12, 0)
    assert after.explanation.startswith("Tue 08:00 in New York (your Tue 14:00)")


def test_new_york_is_five_hours_behind_berlin_between_the_autumn_switches():
    # Europe switched back on 25 October 2026, the US switches back on 1 November.
    result = berlin_to_new_york(local("Europe/Berlin", 2026, 10, 26, 23, 30))
    assert result.at == utc(2026, 10, 27, 12, 0)
    assert result.explanation.startswith("Tue 08:00 in New York (your Tue 13:00)")


def berlin_to_sydney(now: datetime) -> Recommendation:
    return recommend(
        now=now,
        sender_zone="Europe/Berlin",
        recipient_zone="Australia/Sydney",
        recipient_count=1,
    )


def test_sydney_switches_the_opposite_way_in_april_and_october():
    # March: Sydney on summer time (UTC+11), Berlin on winter time (UTC+1): ten hours.
    march = berlin_to_sydney(local("Europe/Berlin", 2026, 3, 23, 20, 0))
    assert march.at == utc(2026, 3, 23, 21, 0)
    assert march.explanation == (
        "Tue 08:00 in Sydney (your Mon 22:00): outside the recipient's working day"
    )
    # Early April: both on summer time: nine hours.
    april = berlin_to_sydney(local("Europe/Berlin", 2026, 3, 30, 20, 0))
    assert april.at == utc(2026, 3, 30, 21, 0)
    assert april.explanation.startswith("Tue 08:00 in Sydney (your Mon 23:00)")
    # From 5 April Sydney is on winter time (UTC+10), Berlin on summer time: eight hours.
    winter = berlin_to_sydney(local("Europe/Berlin", 2026, 4, 13, 20, 0))
    assert winter.at == utc(2026, 4, 13, 22, 0)
    assert winter.explanation.startswith("Tue 08:00 in Sydney (your Tue 00:00)")
    # From 4 October Sydney is on summer time again, Berlin until 25 October: nine hours.
    october = berlin_to_sydney(local("Europe/Berlin", 2026, 10, 12, 20, 0))
    assert october.at == utc(2026, 10, 12, 21, 0)
    assert october.explanation.startswith("Tue 08:00 in Sydney (your Mon 23:00)")


def test_their_usual_hour_follows_their_clock_across_a_switch():
    result = recommend(
        now=local("Europe/Berlin", 2026, 4, 3, 12, 0),  # Friday; Sydney switches on Sunday
        sender_zone="Europe/Berlin",
        recipient_zone="Australia/Sydney",
        recipient_count=1,
        open_hours=(9,) * 5,
    )
    assert result.reason == "usual_open_hour"
    assert result.at == utc(2026, 4, 5, 23, 0)  # Monday 09:00 AEST (UTC+10)
    assert result.explanation == (
        "Mon 09:00 in Sydney (your Mon 01:00): when they usually open mail"
    )


def test_across_the_date_line_the_recipient_s_monday_is_the_sender_s_sunday():
    now = local("Pacific/Honolulu", 2026, 6, 14, 13, 0)  # Sunday, Monday 11:00 in Auckland
    result = recommend(
        now=now,
        sender_zone="Pacific/Honolulu",
        recipient_zone="Pacific/Auckland",
        recipient_count=1,
    )
    assert result.reason == "now_in_hours"
    assert result.at == utc(2026, 6, 14, 23, 0)
    assert result.explanation == (
        "Now, Mon 11:00 in Auckland (your Sun 13:00): within the recipient's working day"
    )


def test_across_the_date_line_a_weekend_there_ends_on_the_sender_s_sunday():
    result = recommend(
        now=local("Pacific/Honolulu", 2026, 6, 19, 14, 0),  # Friday, Saturday in Tokyo
        sender_zone="Pacific/Honolulu",
        recipient_zone="Asia/Tokyo",
        recipient_count=1,
    )
    assert result.at == utc(2026, 6, 21, 23, 0)
    assert result.explanation == (
        "Mon 08:00 in Tokyo (your Sun 13:00): outside the recipient's working day"
    )


def test_across_the_date_line_the_other_way_the_recipient_s_monday_is_the_sender_s_tuesday():
    result = recommend(
        now=local("Pacific/Auckland", 2026, 6, 15, 9, 0),  # Monday, Sunday 11:00 in Honolulu
        sender_zone="Pacific/Auckland",
        recipient_zone="Pacific/Honolulu",
        recipient_count=1,
    )
    assert result.at == utc(2026, 6, 15, 18, 0)
    assert result.explanation == (
        "Mon 08:00 in Honolulu (your Tue 06:00): outside the recipient's working day"
    )


def test_a_recommendation_is_never_in_the_past():
    start = utc(2026, 3, 1, 0, 0)
    for zone in ("America/New_York", "Australia/Sydney", "Pacific/Auckland", "Asia/Kolkata"):
        for step in range(0, 24 * 14 * 4):
            now = start + timedelta(minutes=15 * step)
            for opens in ((), (16,) * 5):
                result = recommend(
                    now=now,
                    sender_zone="Europe/Berlin",
                    recipient_zone=zone,
                    recipient_count=1,
                    country="DE",
                    open_hours=opens,
                )
                assert result.at is not None and result.at >= now, (zone, now, opens)
                assert result.at - now < timedelta(days=5), (zone, now, opens)


# -- Wording and configuration ----------------------------------------------------------------


def test_explanations_are_translated_before_their_placeholders_are_filled():
    german = {
        "%(weekday)s %(time)s in %(city)s (your %(sender_weekday)s %(sender_time)s):"
        " outside the recipient's working day": "%(weekday)s %(time)s in %(city)s"
        " (bei Ihnen %(sender_weekday)s %(sender_time)s): außerhalb der Arbeitszeit",
        "Wed": "Mi",
        "No recommendation: the email has several recipients": "Keine Empfehlung",
    }
    result = for_berlin(
        local("Europe/Berlin", 2026, 6, 16, 18, 30), gettext=lambda s: german.get(s, s)
    )
    assert result.explanation == (
        "Mi 08:00 in Berlin (bei Ihnen Mi 08:00): außerhalb der Arbeitszeit"
    )
    several = recommend(
        now=utc(2026, 6, 16, 8, 0),
        sender_zone="Europe/Berlin",
        recipient_zone="Europe/Berlin",
        recipient_count=2,
        gettext=lambda s: german.get(s, s),
    )
    assert several.explanation == "Keine Empfehlung"


def test_a_zone_is_named_after_its_city():
    assert city_of("America/Argentina/Buenos_Aires") == "Buenos Aires"
    assert city_of("UTC") == "UTC"


def test_the_default_configuration_is_the_default_working_day():
    assert working_hours_from_config(DEFAULTS) == WorkingHours()
    assert working_hours_from_config({}) == WorkingHours()


def test_working_hours_are_read_from_the_configuration():
    config = {
        "ENGAGE_WORKING_HOURS_START": "09:30",
        "ENGAGE_WORKING_HOURS_END": time(18, 0),
        "ENGAGE_WORKING_DAYS": [6, 0, 1, 2, 3],
    }
    assert working_hours_from_config(config) == WorkingHours(
        start=time(9, 30), end=time(18, 0), weekdays=frozenset({6, 0, 1, 2, 3})
    )


@pytest.mark.parametrize("country", ["DE", "de", "DEU", "Germany", "germany", "Deutschland"])
def test_a_country_written_as_a_name_or_a_code_has_the_same_holidays(country):
    # Found through the demo: "Germany" found Berlin's zone but no public holidays.
    result = for_berlin(local("Europe/Berlin", 2026, 12, 24, 18, 0), country=country)
    assert result.at == utc(2026, 12, 28, 7, 0)
    assert public_holidays(country, 2026) is public_holidays("DE", 2026)


def test_country_names_resolve_the_same_for_zones_holidays_and_regions():
    from engage.geonames import country_code

    assert country_code("United States") == country_code("USA") == country_code("us") == "US"
    assert country_code("the Netherlands") == country_code("Nederland") == "NL"
    assert country_code("Österreich") == "AT"
    assert country_code("Atlantis") is None and country_code("") is None
    assert date(2027, 7, 5) in public_holidays("United States", 2027)
