"""Upstream reconciliation (§3): a provider's usage statement against our metering per day/model.

Metered (minimax-m2.5 at list 0.30 input / 1.10 output per 1M): on 2026-10-15 acme's call of
2,000M input + 500M output = 600 + 550 = 1150.00; on 2026-10-16 a call of 100M input = 30.00.
The statement agrees on the 15th, charges 30.50 on the 16th (+0.50), and bills a 17th we never
metered (1M input, 0.30).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from distributor.errors import Conflict, ValidationFailed
from procurement.models import Provider, UpstreamStatement, UpstreamStatementLine
from procurement.selectors import upstream_variance
from procurement.services import upstream_statement_import
from tests.settlement.test_close_world import UsageFactory, World, ingest, world_build

D = Decimal
NOW = datetime(2026, 11, 5, tzinfo=UTC)
STATEMENT = """day,model,input,output,amount
2026-10-15,minimax-m2.5,2000000000,500000000,1150.00
2026-10-16,minimax-m2.5,100000000,0,30.50
2026-10-17,minimax-m2.5,1000000,,0.30
"""


@pytest.fixture
def world(db: None) -> World:
    world = world_build()
    ingest(
        [
            UsageFactory(input_tokens=2_000_000_000, output_tokens=500_000_000),
            UsageFactory(input_tokens=100_000_000, occurred_at="2026-10-16T08:00:00Z"),
        ],
        datetime(2026, 10, 16, 9, tzinfo=UTC),
    )
    return world


def test_the_statement_is_held_against_our_metering_day_by_day(world: World) -> None:
    minimax = Provider.objects.get(code="minimax")
    statement = upstream_statement_import(
        book=world.book, provider=minimax, csv_text=STATEMENT, reference="MM-2026-10", imported_at=NOW
    )
    assert (statement.day_from, statement.day_to) == (date(2026, 10, 15), date(2026, 10, 17))

    rows = upstream_variance(book=world.book, provider=minimax)
    assert [
        (r.day.day, r.statement_amount, r.metered_amount, r.amount_variance, r.matches) for r in rows
    ] == [
        (15, D("1150.00"), D("1150.00"), D("0"), True),
        (16, D("30.50"), D("30.00"), D("0.50"), False),
        (17, D("0.30"), D("0"), D("0.30"), False),
    ]
    assert rows[1].token_variance == {"input": 0, "cached_input": 0, "cache_write": 0, "output": 0}
    assert rows[2].token_variance["input"] == 1_000_000
    # A day we metered that the statement leaves out shows with no statement amount.
    assert upstream_variance(book=world.book, provider=minimax, day_from=date(2026, 10, 16))[0].day.day == 16


def test_a_metered_day_missing_from_the_statement_is_a_variance(world: World) -> None:
    minimax = Provider.objects.get(code="minimax")
    upstream_statement_import(
        book=world.book,
        provider=minimax,
        csv_text="day,model,input,output,amount\n2026-10-15,minimax-m2.5,2000000000,500000000,1150.00\n",
        reference="MM-partial",
        imported_at=NOW,
    )
    missing = upstream_variance(book=world.book, provider=minimax)[1]
    assert (missing.day.day, missing.statement_amount, missing.amount_variance) == (16, None, D("-30.00"))
    assert missing.token_variance["input"] == -100_000_000


def test_the_same_file_again_is_a_no_op_and_other_content_a_conflict(world: World) -> None:
    minimax = Provider.objects.get(code="minimax")
    first = upstream_statement_import(
        book=world.book, provider=minimax, csv_text=STATEMENT, reference="MM-2026-10", imported_at=NOW
    )
    again = upstream_statement_import(
        book=world.book, provider=minimax, csv_text=STATEMENT, reference="MM-2026-10", imported_at=NOW
    )
    assert again.pk == first.pk and UpstreamStatementLine.objects.count() == 3
    with pytest.raises(Conflict):
        upstream_statement_import(
            book=world.book,
            provider=minimax,
            csv_text=STATEMENT.replace("30.50", "31.00"),
            reference="MM-2026-10",
            imported_at=NOW,
        )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("day,model,tokens,amount\n", "header must name day, model, amount"),
        ("day,model,amount\n", "no lines"),
        ("day,model,input,amount\n2026-13-01,minimax-m2.5,1,0.30\n", "line 2: day must be a date"),
        ("day,model,input,amount\n2026-10-01,glm-5,1,0.30\n", "line 2: 'glm-5' is not a model of minimax"),
        ("day,model,input,amount\n2026-10-01,minimax-m2.5,-1,0.30\n", "line 2: input must be a whole number"),
        (
            "day,model,input,amount\n2026-10-01,minimax-m2.5,1,-0.30\n",
            "line 2: amount must be a non-negative",
        ),
        ("day,model,input,amount\n2026-10-01,minimax-m2.5,1\n", "line 2 does not have one value per column"),
        (
            "day,model,input,amount\n2026-10-01,minimax-m2.5,1,0.3\n2026-10-01,minimax-m2.5,1,0.3\n",
            "line 3: 2026-10-01 minimax-m2.5 appears twice",
        ),
    ],
)
def test_a_bad_statement_is_refused_with_its_line_and_writes_nothing(
    world: World, text: str, message: str
) -> None:
    minimax = Provider.objects.get(code="minimax")
    with pytest.raises(ValidationFailed) as caught:
        upstream_statement_import(
            book=world.book, provider=minimax, csv_text=text, reference="bad", imported_at=NOW
        )
    assert message in caught.value.message
    assert UpstreamStatement.objects.count() == 0


def test_finance_imports_a_statement_in_the_admin(world: World, admin_client: object) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    minimax = Provider.objects.get(code="minimax")
    response = admin_client.post(  # type: ignore[attr-defined]
        "/admin/procurement/upstreamstatement/add/",
        {
            "book": world.book.pk,
            "provider": minimax.pk,
            "reference": "MM-2026-10",
            "file": SimpleUploadedFile("mm.csv", STATEMENT.encode()),
        },
    )
    assert response.status_code == 302
    statement = UpstreamStatement.objects.get()
    page = admin_client.get(f"/admin/procurement/upstreamstatement/{statement.pk}/change/")  # type: ignore[attr-defined]
    assert page.status_code == 200
    assert "VARIANCE" in page.content.decode() and "0.50" in page.content.decode()
