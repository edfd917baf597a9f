"""Margin per book, month and model (the report's `margins`, the dashboards' margin table).

Hand-worked from the public scenario's October:
- platform bills alpha 2,000M input x 0.276 + 500M output x 1.012 = 552 + 506 = 1058.00 of
  minimax-m2.5, bought at 9000/10000 of list (600 + 550) = 1035.00; claude-opus-4.6 94.00 against
  list 50 + 50 = 100.00 (a negative margin, the alpha override of 4.80 on input); devsolo's glm-5:
  1000 calls x (40,000 x 0.3165 + 10,000 x 2.69025) / 1M = 39.5625 against list 12 + 25.5 = 37.50.
- alpha's own book bills beta 1104.00 and 96.00 against what alpha pays platform, 1058.00 and 94.00.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from settlement.selectors import margins
from tests.settlement.test_close_world import october_usage, world_build

D = Decimal


def figures(rows: list) -> dict[str, tuple[str, Decimal, Decimal, Decimal, bool]]:
    return {r.model: (r.period, r.revenue, r.cost, r.margin, r.negative) for r in rows}


def test_october_margins_at_the_root_and_at_a_distributor(db: None) -> None:
    world = world_build()
    october_usage(world)

    assert figures(margins(book=world.book)) == {
        "minimax-m2.5": ("2026-10", D("1058.00"), D("1035.00"), D("23.00"), False),
        "claude-opus-4.6": ("2026-10", D("94.00"), D("100.00"), D("-6.00"), True),
        "glm-5": ("2026-10", D("39.5625"), D("37.50"), D("2.0625"), False),
    }
    assert figures(margins(book=world.alpha.own_book)) == {
        "minimax-m2.5": ("2026-10", D("1104.00"), D("1058.00"), D("46.00"), False),
        "claude-opus-4.6": ("2026-10", D("96.00"), D("94.00"), D("2.00"), False),
    }
    # A window that holds no usage reports nothing rather than rows of zeros.
    assert margins(book=world.book, day_from=date(2026, 11, 1)) == []
