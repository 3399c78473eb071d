"""Reading the return date of an out-of-office reply (SPEC S42): the pure part, on a corpus."""

from __future__ import annotations

from datetime import date

import pytest

from engage.out_of_office import return_date
from tests.data.out_of_office_corpus import CORPUS


def test_the_corpus_has_at_least_thirty_replies_in_both_languages():
    assert len(CORPUS) >= 30
    assert sum("Abwesen" in s or "Automatische" in s or "AW:" in s for s, *_ in CORPUS) >= 12


@pytest.mark.parametrize(("subject", "text", "written", "expected"), CORPUS)
def test_the_return_date_a_person_reads_is_the_one_found(subject, text, written, expected):
    assert return_date(subject, text, written=written) == expected


def test_a_date_in_the_quoted_original_is_not_read():
    text = "Thanks!\n\n> I am back on 9 December\n"
    assert return_date("Automatic reply", text, written=date(2026, 11, 30)) is None


def test_a_date_more_than_a_year_ahead_is_not_believed():
    text = "I am on sabbatical and back on 1 March 2029."
    assert return_date("Out of office", text, written=date(2026, 11, 30)) is None


def test_an_impossible_date_is_not_used():
    assert return_date("Out of office", "Back on 31.02.2027.", written=date(2026, 11, 30)) is None
