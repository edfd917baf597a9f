"""Array literals for set-based inserts: whatever a column holds comes back from PostgreSQL as it
went in (quotes, backslashes, braces, commas, spaces, empty strings, NULLs, Decimals, dates)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from distributor.sql import array_literal

# PostgreSQL text cannot hold NUL.
texts = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)))


def round_trip(values: list[object], pg_type: str) -> list[object]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT %s::{pg_type}[]", [array_literal(values)])
        return list(cursor.fetchone()[0])


@pytest.mark.django_db
@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(texts, st.none()), max_size=12))
def test_text_columns_come_back_as_they_went_in(values: list[str | None]) -> None:
    assert round_trip(values, "text") == values


@pytest.mark.django_db
def test_the_plain_and_the_escaped_path_agree() -> None:
    plain = ["glm-5", "input", "minimax-m2.5 output (late usage)", ""]
    assert array_literal(plain) == '{"glm-5","input","minimax-m2.5 output (late usage)",""}'
    tricky = ['a","b', "back\\slash", "{brace}", "NULL", " spaced "]
    assert round_trip(tricky, "text") == tricky
    assert array_literal(['say "hi"']) == '{"say \\"hi\\""}'


@pytest.mark.django_db
def test_numbers_dates_and_nulls() -> None:
    assert round_trip([Decimal("0.000000000000000001"), None, Decimal("-12.5")], "numeric") == [
        Decimal("0.000000000000000001"),
        None,
        Decimal("-12.5"),
    ]
    assert round_trip([date(2026, 10, 1), date(2026, 12, 31)], "date") == [
        date(2026, 10, 1),
        date(2026, 12, 31),
    ]
    assert round_trip([True, False, None], "boolean") == [True, False, None]
    assert round_trip([], "bigint") == []
