"""Price lists and cascade rating (§4): what each hop pays its parent, worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from accounts.models import AuditRecord, PriceList
from accounts.selectors import account_price, cascade_prices, cascade_prices_many
from accounts.services import price_list_set
from distributor.errors import Conflict, NotFound, ValidationFailed
from tests.accounts.factories import JAN_1, ListPriceVersionFactory, account, model_with_prices, root_book

pytestmark = pytest.mark.django_db

OCT_15 = datetime(2026, 10, 15, 10, tzinfo=UTC)


@pytest.fixture
def scenario():
    """The public scenario's book, list prices and accounts (october-2026.yaml)."""
    book = root_book()
    model_with_prices("minimax", "minimax-m2.5", input="0.30", cached_input="0.03", output="1.10")
    model_with_prices("zhipu", "glm-5", input="0.30", cached_input="0.06", output="2.55")
    model_with_prices(
        "anthropic", "claude-opus-4.6", input="5.00", cached_input="0.50", cache_write="6.25", output="25.00"
    )
    alpha = account(book, "alpha", credit_limit=Decimal("50000.00"))
    beta = account(book, "beta", parent=alpha, credit_limit=Decimal("20000.00"))
    acme = account(book, "acme", parent=beta, kind="customer", net_days=15, tax_rate=Decimal("0.06"))
    devsolo = account(book, "devsolo", kind="customer", terms="prepaid")
    price_list_set(
        account=alpha,
        effective_from=JAN_1,
        rule="discount",
        rate=Decimal("0.08"),
        overrides={"claude-opus-4.6": {"input": Decimal("4.80")}},
    )
    price_list_set(account=beta, effective_from=JAN_1, rule="discount", rate=Decimal("0.04"))
    price_list_set(account=acme, effective_from=JAN_1, rule="discount", rate=Decimal("0"))
    price_list_set(account=devsolo, effective_from=JAN_1, rule="markup", rate=Decimal("0.055"))
    return book, alpha, beta, acme, devsolo


def prices_of(acct, model: str) -> tuple[Decimal, ...]:
    return tuple(
        account_price(account=acct, model_code=model, token_class=c, at=OCT_15) for c in ("input", "output")
    )


def test_scenario_prices_per_account(scenario) -> None:
    _, alpha, beta, acme, devsolo = scenario
    # alpha: minimax 0.30 x 0.92 = 0.276, 1.10 x 0.92 = 1.012; claude input overridden 4.80,
    # output 25.00 x 0.92 = 23.00.
    assert prices_of(alpha, "minimax-m2.5") == (Decimal("0.276"), Decimal("1.012"))
    assert prices_of(alpha, "claude-opus-4.6") == (Decimal("4.80"), Decimal("23.00"))
    # beta: 0.30 x 0.96 = 0.288, 1.10 x 0.96 = 1.056; claude 5.00 x 0.96 = 4.80, 25.00 x 0.96 = 24.00.
    assert prices_of(beta, "minimax-m2.5") == (Decimal("0.288"), Decimal("1.056"))
    assert prices_of(beta, "claude-opus-4.6") == (Decimal("4.80"), Decimal("24.00"))
    # acme: discount 0 is list price.
    assert prices_of(acme, "minimax-m2.5") == (Decimal("0.30"), Decimal("1.10"))
    assert prices_of(acme, "claude-opus-4.6") == (Decimal("5.00"), Decimal("25.00"))
    # devsolo: 0.30 x 1.055 = 0.3165, 2.55 x 1.055 = 2.69025 (exact, never rounded).
    assert prices_of(devsolo, "glm-5") == (Decimal("0.3165"), Decimal("2.69025"))


def test_override_replaces_one_class_only(scenario) -> None:
    _, alpha, *_ = scenario
    # cached input and cache write are not overridden: 0.50 x 0.92 = 0.46, 6.25 x 0.92 = 5.75.
    at = OCT_15
    assert account_price(
        account=alpha, model_code="claude-opus-4.6", token_class="cached_input", at=at
    ) == Decimal("0.46")
    assert account_price(
        account=alpha, model_code="claude-opus-4.6", token_class="cache_write", at=at
    ) == Decimal("5.75")


def test_scenario_cascade_hops_leaf_first(scenario, django_assert_num_queries) -> None:
    book, alpha, beta, acme, _ = scenario
    with django_assert_num_queries(1):
        cascade = cascade_prices(account=acme, model_code="minimax-m2.5", at=OCT_15)
    assert [h.payer_code for h in cascade.hops] == ["acme", "beta", "alpha"]
    # acme owes beta in beta's own book, beta owes alpha in alpha's, alpha owes the root in the root book.
    assert [(h.payee_account_id, h.payee_book_id) for h in cascade.hops] == [
        (beta.pk, beta.own_book_id),
        (alpha.pk, alpha.own_book_id),
        (None, book.pk),
    ]
    assert [h.prices["input"] for h in cascade.hops] == [Decimal("0.30"), Decimal("0.288"), Decimal("0.276")]
    assert [h.prices["output"] for h in cascade.hops] == [Decimal("1.10"), Decimal("1.056"), Decimal("1.012")]
    # minimax has no cache-write list price: no hop has one either.
    assert all(h.prices["cache_write"] is None for h in cascade.hops)
    assert cascade.root_book_id == book.pk
    assert cascade.provider_code == "minimax"
    assert cascade.list_prices["input"] == Decimal("0.30")
    assert cascade.list_price_version_id is not None
    assert [h.terms for h in cascade.hops] == ["monthly", "monthly", "monthly"]


@pytest.fixture
def four_levels():
    """root -> d1 (discount 0.10) -> d2 (discount 0.05, override m input 0.25) -> d3 (markup 0.02)
    -> c (discount 0). Model m lists input 1.00 / output 4.00, input 1.20 from Oct 15;
    d2's list becomes discount 0.06 without override from Oct 20."""
    book = root_book("tier4")
    model = model_with_prices("acmeai", "m", input="1.00", output="4.00")
    ListPriceVersionFactory(
        model=model,
        effective_from=datetime(2026, 10, 15, tzinfo=UTC),
        input=Decimal("1.20"),
        output=Decimal("4.00"),
    )
    d1 = account(book, "d1")
    d2 = account(book, "d2", parent=d1)
    d3 = account(book, "d3", parent=d2)
    c = account(book, "c", parent=d3, kind="customer", terms="prepaid")
    price_list_set(account=d1, effective_from=JAN_1, rule="discount", rate=Decimal("0.10"))
    price_list_set(
        account=d2,
        effective_from=JAN_1,
        rule="discount",
        rate=Decimal("0.05"),
        overrides={"m": {"input": "0.25"}},
    )
    price_list_set(account=d3, effective_from=JAN_1, rule="markup", rate=Decimal("0.02"))
    price_list_set(account=c, effective_from=JAN_1, rule="discount", rate=Decimal("0"))
    price_list_set(
        account=d2, effective_from=datetime(2026, 10, 20, tzinfo=UTC), rule="discount", rate=Decimal("0.06")
    )
    return book, d1, d2, d3, c


def test_four_level_cascade_with_mid_month_changes_in_one_query(
    four_levels, django_assert_num_queries
) -> None:
    book, d1, d2, d3, c = four_levels
    oct_10 = datetime(2026, 10, 10, tzinfo=UTC)
    oct_16 = datetime(2026, 10, 16, tzinfo=UTC)
    oct_20 = datetime(2026, 10, 20, tzinfo=UTC)  # d2's new version takes effect at this instant
    with django_assert_num_queries(1):
        found = cascade_prices_many(
            requests=[(c.pk, "m", oct_10), (c.pk, "m", oct_16), (c.pk, "m", oct_20), (d2.pk, "m", oct_10)]
        )

    def table(at: datetime) -> list[tuple[str, Decimal | None, Decimal | None]]:
        return [(h.payer_code, h.prices["input"], h.prices["output"]) for h in found[(c.pk, "m", at)].hops]

    # Oct 10, list 1.00 / 4.00: c 1.00/4.00; d3 1.00 x 1.02 = 1.02, 4.00 x 1.02 = 4.08;
    # d2 override 0.25, 4.00 x 0.95 = 3.80; d1 1.00 x 0.90 = 0.90, 4.00 x 0.90 = 3.60.
    assert table(oct_10) == [
        ("c", Decimal("1.00"), Decimal("4.00")),
        ("d3", Decimal("1.02"), Decimal("4.08")),
        ("d2", Decimal("0.25"), Decimal("3.80")),
        ("d1", Decimal("0.90"), Decimal("3.60")),
    ]
    # Oct 16, list input 1.20: c 1.20; d3 1.20 x 1.02 = 1.224; d2 still its override 0.25; d1 1.20 x 0.90 = 1.08.
    assert table(oct_16) == [
        ("c", Decimal("1.20"), Decimal("4.00")),
        ("d3", Decimal("1.224"), Decimal("4.08")),
        ("d2", Decimal("0.25"), Decimal("3.80")),
        ("d1", Decimal("1.08"), Decimal("3.60")),
    ]
    # Oct 20, d2 at discount 0.06, no override: 1.20 x 0.94 = 1.128, 4.00 x 0.94 = 3.76.
    assert table(oct_20)[2] == ("d2", Decimal("1.128"), Decimal("3.76"))
    oct_16_cascade = found[(c.pk, "m", oct_16)]
    assert oct_16_cascade.list_prices == {
        "input": Decimal("1.20"),
        "cached_input": None,
        "cache_write": None,
        "output": Decimal("4.00"),
    }
    assert found[(c.pk, "m", oct_10)].list_price_version_id != oct_16_cascade.list_price_version_id
    assert (
        found[(c.pk, "m", oct_10)].hops[2].price_list_id != found[(c.pk, "m", oct_20)].hops[2].price_list_id
    )
    # d2's own cascade starts at d2 and has two hops.
    assert [h.payer_code for h in found[(d2.pk, "m", oct_10)].hops] == ["d2", "d1"]
    assert oct_16_cascade.hops[0].terms == "prepaid"
    assert oct_16_cascade.root_book_id == book.pk


def test_cascade_of_many_accounts_is_still_one_query(
    four_levels, scenario, django_assert_num_queries
) -> None:
    _, d1, d2, d3, c = four_levels
    _, alpha, beta, acme, devsolo = scenario
    requests = [(a.pk, model, OCT_15) for a in (d1, d2, d3, c) for model in ("m",)] + [
        (a.pk, model, OCT_15) for a in (alpha, beta, acme) for model in ("minimax-m2.5", "claude-opus-4.6")
    ]
    with django_assert_num_queries(1):
        found = cascade_prices_many(requests=requests)
    assert len(found) == 10
    assert sum(len(c_.hops) for c_ in found.values()) == (1 + 2 + 3 + 4) + 2 * (1 + 2 + 3)


def test_unknown_model_and_no_price(four_levels) -> None:
    _, _, d2, _, c = four_levels
    assert cascade_prices_many(requests=[(c.pk, "no-such-model", OCT_15), (999999, "m", OCT_15)]) == {}
    with pytest.raises(NotFound):
        cascade_prices(account=c, model_code="no-such-model", at=OCT_15)
    # Before any list price (2025): no version in force, no hop price except d2's absolute override.
    before = cascade_prices(account=c, model_code="m", at=datetime(2025, 6, 1, tzinfo=UTC))
    assert before.list_price_version_id is None
    assert [h.prices["input"] for h in before.hops] == [None, None, None, None]  # d2's list also starts Jan 1
    with pytest.raises(ValidationFailed, match="no price for cache_write"):
        account_price(account=c, model_code="m", token_class="cache_write", at=OCT_15)
    with pytest.raises(ValidationFailed, match="token class"):
        account_price(account=c, model_code="m", token_class="reasoning", at=OCT_15)


def test_price_list_versions_are_append_only(four_levels) -> None:
    _, d1, *_ = four_levels
    # Setting the same version again with the same content returns it (a replayed scenario is harmless).
    first = PriceList.objects.get(account=d1)
    assert price_list_set(account=d1, effective_from=JAN_1, rule="discount", rate=Decimal("0.100")) == first
    with pytest.raises(Conflict, match="append-only"):
        price_list_set(account=d1, effective_from=JAN_1, rule="discount", rate=Decimal("0.20"))
    with pytest.raises(ValidationFailed, match="append-only"):
        price_list_set(
            account=d1, effective_from=datetime(2025, 12, 1, tzinfo=UTC), rule="markup", rate=Decimal(0)
        )


def test_price_list_refuses_bad_input(four_levels) -> None:
    _, d1, *_ = four_levels
    at = datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(ValidationFailed, match="between 0 and 1"):
        price_list_set(account=d1, effective_from=at, rule="discount", rate=Decimal("1.5"))
    with pytest.raises(ValidationFailed, match="negative"):
        price_list_set(account=d1, effective_from=at, rule="markup", rate=Decimal("-0.1"))
    with pytest.raises(ValidationFailed, match="rule"):
        price_list_set(account=d1, effective_from=at, rule="cost_plus", rate=Decimal("0.1"))
    with pytest.raises(ValidationFailed, match="unknown model"):
        price_list_set(
            account=d1, effective_from=at, rule="markup", rate=Decimal(0), overrides={"gpt-9": {"input": 1}}
        )
    with pytest.raises(ValidationFailed, match="token_class"):
        price_list_set(
            account=d1, effective_from=at, rule="markup", rate=Decimal(0), overrides={"m": {"audio": 1}}
        )
    with pytest.raises(ValidationFailed, match="decimal string"):
        price_list_set(account=d1, effective_from=at, rule="markup", rate=0.1)  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed, match="10 decimal places"):
        price_list_set(
            account=d1,
            effective_from=at,
            rule="markup",
            rate=Decimal(0),
            overrides={"m": {"input": "0.12345678901"}},
        )
    with pytest.raises(ValidationFailed, match="time zone"):
        price_list_set(account=d1, effective_from=datetime(2026, 11, 1), rule="markup", rate=Decimal(0))


def test_price_list_change_is_audited(four_levels) -> None:
    _, _, d2, *_ = four_levels
    record = AuditRecord.objects.filter(action="price_list.set", object_repr__startswith="d2").first()
    assert record is not None  # newest first: the Oct 20 version
    assert record.before == {
        "account": "d2",
        "effective_from": "2026-01-01T00:00:00+00:00",
        "rule": "discount",
        "rate": "0.05",
        "overrides": {"m": {"input": "0.25"}},
    }
    assert record.after == {
        "account": "d2",
        "effective_from": "2026-10-20T00:00:00+00:00",
        "rule": "discount",
        "rate": "0.06",
        "overrides": {},
    }
