"""Aging (§9, §11.11): open receivables by days past due, counted in calendar dates of the book's
zone, in buckets from the book's edges; as of any moment."""

from __future__ import annotations

from datetime import date

import pytest

from distributor.errors import ValidationFailed
from settlement.risk_selectors import aging, bucket_labels, bucket_of
from settlement.services.provisioning import provision_matrix_set
from tests.settlement.test_close_world import D, World, utc
from tests.settlement.test_exposure import REPORT_AT, risk_world_build


@pytest.fixture
def risk_world(db: None) -> World:
    return risk_world_build()


ZERO_ROW = {"current": D(0), "1-30": D(0), "31-60": D(0), "61-90": D(0), "91-180": D(0), "180+": D(0)}


def test_the_public_scenario_aging(risk_world: World) -> None:
    w = risk_world
    figures = aging(book=w.book, currency="USD", as_of=REPORT_AT)
    # alpha's invoice: due 2026-11-30, 652 open on 2026-12-31 = 31 days past due.
    assert list(figures.buckets) == ["current", "1-30", "31-60", "61-90", "91-180", "180+"]
    assert figures.buckets == ZERO_ROW | {"31-60": D("652.00")}
    assert figures.per_account == {"alpha": ZERO_ROW | {"31-60": D("652.00")}}
    assert [(i.account, i.days_past_due) for i in figures.invoices] == [("alpha", 31)]
    for book in (w.alpha.own_book, w.beta.own_book):
        assert aging(book=book, currency="USD", as_of=REPORT_AT).buckets == ZERO_ROW


def test_aging_as_of_earlier_moments_rebuilds_each_open_amount(risk_world: World) -> None:
    w = risk_world
    # 1 November: just issued, not yet due: the whole 1152 is current.
    assert aging(book=w.book, currency="USD", as_of=utc("2026-11-01T12:00:00Z")).buckets == ZERO_ROW | {
        "current": D("1152.00")
    }
    # 1 December: one day late, before alpha's 500 on the 10th.
    assert aging(book=w.book, currency="USD", as_of=utc("2026-12-01T00:00:00Z")).buckets == ZERO_ROW | {
        "1-30": D("1152.00")
    }
    # beta's book: acme's 1855 was due 15 November and paid on the 10th.
    beta_book = w.beta.own_book
    assert aging(book=beta_book, currency="USD", as_of=utc("2026-11-09T00:00:00Z")).buckets == ZERO_ROW | {
        "current": D("1855.00")
    }
    assert aging(book=beta_book, currency="USD", as_of=utc("2026-11-10T00:00:00Z")).buckets == ZERO_ROW
    # Before the issue there is nothing to age.
    assert aging(book=w.book, currency="USD", as_of=utc("2026-10-31T00:00:00Z")).buckets == ZERO_ROW


def test_bucket_edges_include_their_upper_day() -> None:
    edges = (0, 30, 60, 90, 180)
    cases = {-5: "current", 0: "current", 1: "1-30", 30: "1-30", 31: "31-60", 90: "61-90"}
    cases |= {91: "91-180", 180: "91-180", 181: "180+", 4000: "180+"}
    assert {days: bucket_of(days, edges) for days in cases} == cases
    assert bucket_labels((0, 15, 45)) == ["current", "1-15", "16-45", "45+"]
    for bad in ((), (5, 30), (0, 30, 30), (0, 60, 30)):
        with pytest.raises(ValidationFailed):
            bucket_labels(bad)


def test_the_books_configured_edges_set_the_buckets(risk_world: World) -> None:
    w = risk_world
    provision_matrix_set(
        book=w.book,
        rates={"current": D("0.01"), "1-45": D("0.1"), "45+": D("0.5")},
        edges=(0, 45),
        effective_from=date(2026, 12, 1),
    )
    # 31 days late falls in 1-45 under these edges.
    assert aging(book=w.book, currency="USD", as_of=REPORT_AT).buckets == {
        "current": D(0),
        "1-45": D("652.00"),
        "45+": D(0),
    }


@pytest.fixture
def shanghai(db: None) -> World:
    return risk_world_build(timezone="Asia/Shanghai", payments=False)


def test_a_shanghai_book_ages_by_its_own_calendar_around_midnight_utc(shanghai: World) -> None:
    """alpha's invoice is due 2026-11-30. Shanghai's 1 December starts at 2026-11-30T16:00Z: a
    minute before, it is still current there (and in UTC); a minute after, it is 1 day late there
    although UTC still reads 30 November."""
    book = shanghai.book
    assert book.timezone == "Asia/Shanghai"

    def bucket_at(text: str) -> dict[str, D]:
        return {k: v for k, v in aging(book=book, currency="USD", as_of=utc(text)).buckets.items() if v}

    assert bucket_at("2026-11-30T15:59:00Z") == {"current": D("1152.00")}
    assert bucket_at("2026-11-30T16:01:00Z") == {"1-30": D("1152.00")}
    # Day 30 ends at Shanghai midnight of 30 December: 15:59Z is 30 days late, 16:01Z is 31.
    assert bucket_at("2026-12-30T15:59:00Z") == {"1-30": D("1152.00")}
    assert bucket_at("2026-12-30T16:01:00Z") == {"31-60": D("1152.00")}
