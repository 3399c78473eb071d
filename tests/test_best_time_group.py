"""One best time for several recipients (SPEC S40): the pure overlap search, across zones,
daylight-saving changes, public holidays, absences and usual open hours."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engage.best_time import GroupReason, Recipient, recommend_for_group

BERLIN = Recipient("jonas@example.de", "Jonas", "Europe/Berlin", "DE")
LONDON = Recipient("ada@example.co.uk", "Ada", "Europe/London", "GB")
NEW_YORK = Recipient("grace@example.com", "Grace", "America/New_York", "US")
TOKYO = Recipient("yuki@example.jp", "Yuki", "Asia/Tokyo", "JP")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def best(recipients, now, **options):
    return recommend_for_group(recipients, now=now, sender_zone="Europe/Berlin", **options)


def test_the_earliest_moment_inside_every_working_day_is_proposed():
    # Monday 07:00 in Berlin is 06:00 in London: London starts an hour later.
    result = best([BERLIN, LONDON], utc(2026, 3, 2, 6, 0))
    assert result.reason is GroupReason.EVERY_RECIPIENT
    assert result.at == utc(2026, 3, 2, 8, 0)
    assert (result.covered, result.known) == (2, 2)
    assert [r.local.strftime("%H:%M") for r in result.recipients] == ["09:00", "08:00"]
    assert all(r.working for r in result.recipients)
    assert result.sender_local.strftime("%a %H:%M") == "Mon 09:00"


def test_now_is_proposed_when_everyone_is_working_already():
    now = utc(2026, 3, 3, 10, 17)
    assert best([BERLIN, LONDON], now).at == now


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # Winter: New York is UTC-5, Berlin UTC+1: New York's 08:00 is 13:00 UTC.
        (utc(2026, 1, 5, 10, 0), utc(2026, 1, 5, 13, 0)),
        # New York moved its clocks on 8 March, Berlin only on 29 March: 12:00 UTC.
        (utc(2026, 3, 9, 10, 0), utc(2026, 3, 9, 12, 0)),
        # Both on summer time: still 12:00 UTC, Berlin's 14:00.
        (utc(2026, 3, 30, 10, 0), utc(2026, 3, 30, 12, 0)),
    ],
    ids=["winter", "us-summer-eu-winter", "both-summer"],
)
def test_the_overlap_follows_each_zones_daylight_saving_changes(now, expected):
    result = best([BERLIN, NEW_YORK], now)
    assert result.reason is GroupReason.EVERY_RECIPIENT
    assert result.at == expected
    assert result.recipients[1].local.strftime("%H:%M") == "08:00"


def test_a_weekend_is_skipped_to_the_first_shared_working_time():
    # Friday 17:30 in Berlin: New York still works, Berlin not until Monday 08:00.
    result = best([BERLIN, NEW_YORK], utc(2026, 1, 9, 16, 30))
    assert result.at == utc(2026, 1, 12, 13, 0)


def test_a_public_holiday_of_one_country_moves_the_time_to_the_next_day():
    # Ascension Day (14 May 2026) is a holiday in Germany, not in the United Kingdom.
    result = best([BERLIN, LONDON], utc(2026, 5, 14, 6, 0))
    assert result.reason is GroupReason.EVERY_RECIPIENT
    assert result.at == utc(2026, 5, 15, 7, 0)  # Friday 08:00 in London, 09:00 in Berlin


def test_without_a_shared_working_time_the_time_inside_the_most_working_days_is_proposed():
    # Tokyo's and New York's working days never overlap; Berlin overlaps with each.
    result = best([TOKYO, NEW_YORK, BERLIN], utc(2026, 1, 5, 0, 0))
    assert result.reason is GroupReason.MOST_RECIPIENTS
    assert (result.covered, result.known) == (2, 3)
    assert result.at == utc(2026, 1, 5, 7, 0)  # Berlin opens while Tokyo still works
    working = {r.recipient.name: r.working for r in result.recipients}
    assert working == {"Yuki": True, "Grace": False, "Jonas": True}
    assert result.recipients[0].local.strftime("%H:%M") == "16:00"


def test_two_recipients_who_never_overlap_get_the_earliest_working_time_of_either():
    result = best([TOKYO, NEW_YORK], utc(2026, 1, 5, 0, 0))
    assert result.reason is GroupReason.MOST_RECIPIENTS
    assert (result.at, result.covered) == (utc(2026, 1, 5, 0, 0), 1)


def test_a_recipient_without_a_zone_is_named_unknown_and_blocks_nobody():
    nobody = Recipient("someone@example.org")
    result = best([BERLIN, nobody, LONDON], utc(2026, 3, 2, 6, 0))
    assert result.at == utc(2026, 3, 2, 8, 0)
    assert result.unknown == (nobody,)
    assert result.recipients[1].local is None and result.recipients[1].working is None
    assert (result.covered, result.known) == (2, 2)


def test_no_recommendation_when_no_zone_is_known():
    result = best([Recipient("a@example.org"), Recipient("b@example.org")], utc(2026, 3, 2))
    assert result.at is None and result.reason is GroupReason.NO_ZONE_KNOWN
    assert len(result.unknown) == 2


def test_an_absent_recipient_is_waited_for():
    away = Recipient(
        "jonas@example.de", "Jonas", "Europe/Berlin", "DE", absent_until=utc(2026, 3, 4, 7, 0)
    )
    result = best([away, LONDON], utc(2026, 3, 2, 6, 0))
    assert result.at == utc(2026, 3, 4, 8, 0)


def test_an_absence_past_the_search_window_leaves_the_others_their_time():
    away = Recipient(
        "jonas@example.de", "Jonas", "Europe/Berlin", "DE", absent_until=utc(2026, 4, 1, 7, 0)
    )
    result = best([away, LONDON], utc(2026, 3, 2, 6, 0))
    assert result.reason is GroupReason.MOST_RECIPIENTS
    assert result.at == utc(2026, 3, 2, 8, 0)
    assert [r.working for r in result.recipients] == [False, True]


def test_the_usual_open_hour_of_most_recipients_is_preferred_within_the_shared_time():
    jonas = Recipient("jonas@example.de", "Jonas", "Europe/Berlin", "DE", open_hours=[11] * 6)
    mia = Recipient("mia@example.de", "Mia", "Europe/Berlin", "DE", open_hours=[11] * 5 + [9])
    result = best([jonas, mia, LONDON], utc(2026, 3, 2, 6, 0))
    assert result.at == utc(2026, 3, 2, 10, 0)  # 11:00 in Berlin


def test_a_naive_now_is_refused():
    with pytest.raises(ValueError):
        recommend_for_group([BERLIN], now=datetime(2026, 3, 2), sender_zone="UTC")


def test_a_lone_recipient_away_for_weeks_gets_the_first_working_time_after_their_return():
    away = Recipient(
        "jonas@example.de", "Jonas", "Europe/Berlin", "DE", absent_until=utc(2026, 3, 23, 7, 0)
    )
    result = best([away], utc(2026, 3, 2, 6, 0))
    assert result.reason is GroupReason.EVERY_RECIPIENT
    assert result.at == utc(2026, 3, 23, 7, 0)
