"""The scenario format is checked as a whole before any database work: a bad file is refused with
the path of the first bad field and what was expected there (scenario-format.md)."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from settlement.scenario.runner import story_order
from settlement.scenario.spec import (
    Generate,
    Purchase,
    ScenarioInvalid,
    Usage,
    scenario_load,
    scenario_parse,
    scenario_parse_text,
)

REPO = Path(__file__).resolve().parents[2]

BASE = """
book:
  code: platform
  name: Platform Ltd
  currency: USD
  timezone: Asia/Shanghai
  provision_matrix: {current: "0.005", 1-30: "0.02", 31-60: "0.05", 61-90: "0.15", 91-180: "0.40", 180+: "1.00"}
  dunning:
    - {days: 1, action: reminder}
    - {days: 30, action: on_hold}
providers:
  - code: minimax
    name: MiniMax
    currency: USD
    models:
      - code: minimax-m2.5
        prices:
          - {from: 2026-01-01, input: "0.30", output: "1.10"}
accounts:
  - {code: alpha, name: Alpha, parent: null, kind: distributor, currency: USD, terms: monthly,
     credit_limit: "50000.00", prices: [{from: 2026-01-01, discount: "0.08",
     overrides: {minimax-m2.5: {input: "0.25"}}}]}
  - {code: acme, name: Acme, parent: alpha, kind: customer, currency: USD, terms: monthly,
     prices: [{from: 2026-01-01, markup: "0.055"}]}
story:
  - at: 2026-10-02T00:00:00Z
    usage: {account: acme, model: minimax-m2.5, request_id: r-1, input: 1000}
  - at: 2026-09-25T00:00:00Z
    purchase: {provider: minimax, paid: "9000.00", credit: 10000, expires: 2027-03-31}
  - at: 2026-10-02T00:00:00Z
    close: {}
  - at: 2026-10-31T00:00:00Z
    generate: {account: acme, model: minimax-m2.5, calls: 10, input: 40000,
               from: 2026-10-02T00:00:00Z, to: 2026-10-30T00:00:00Z, prefix: acme}
report:
  as_of: 2026-12-31T23:59:59Z
"""


def base() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(BASE))


def refused(data: object) -> str:
    with pytest.raises(ScenarioInvalid) as caught:
        scenario_parse(data)
    return caught.value.message


def test_a_good_file_parses_into_typed_values() -> None:
    scenario = scenario_parse(base())
    assert scenario.book.timezone == "Asia/Shanghai"
    assert scenario.book.provision_matrix is not None
    assert scenario.book.provision_matrix["180+"] == Decimal("1.00")
    assert [d.days for d in scenario.book.dunning] == [1, 30]
    assert scenario.accounts[0].credit_limit == Decimal("50000.00")
    assert scenario.accounts[0].prices[0].overrides == {"minimax-m2.5": {"input": Decimal("0.25")}}
    assert scenario.accounts[1].net_days == 30  # the default
    purchase = scenario.story[1].params
    # An int amount is exact too; a YAML date stays a date.
    assert purchase == Purchase(
        provider="minimax", paid=Decimal("9000.00"), credit=Decimal(10000), expires=date(2027, 3, 31)
    )
    usage = scenario.story[0].params
    assert isinstance(usage, Usage)
    assert (usage.input, usage.output, usage.occurred_at) == (1000, 0, None)
    generate = scenario.story[3].params
    assert isinstance(generate, Generate)
    assert generate.start == datetime(2026, 10, 2, tzinfo=UTC)
    assert scenario.report_as_of == datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_story_runs_in_time_order_and_equal_times_keep_file_order() -> None:
    scenario = scenario_parse(base())
    # Indexes in the file: 0 usage 10-02, 1 purchase 09-25, 2 close 10-02, 3 generate 10-31.
    assert [e.index for e in story_order(scenario)] == [1, 0, 2, 3]


def test_timestamps_given_as_strings_with_an_offset_are_accepted() -> None:
    data = base()
    data["story"][0]["at"] = "2026-10-02T08:00:00+08:00"
    event = scenario_parse(data).story[0]
    assert event.at == datetime(2026, 10, 2, 8, tzinfo=timezone(timedelta(hours=8)))
    assert event.at == datetime(2026, 10, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["story"][0]["usage"].update(input=-5),
            "story[0].usage.input: expected a non-negative integer, got -5",
        ),
        (
            lambda d: d["story"][1]["purchase"].update(paid=9000.5),
            "story[1].purchase.paid: expected a non-negative decimal string in quotes, got the float 9000.5: "
            'YAML reads an unquoted decimal as a binary float; write it as a string, e.g. "9000.5"',
        ),
        (
            lambda d: d["story"][1]["purchase"].update(credit="0"),
            "story[1].purchase.credit: expected a positive decimal string, got '0'",
        ),
        (
            lambda d: d["story"][1]["purchase"].update(provider="openai"),
            "story[1].purchase.provider: expected the code of a provider listed under providers, got 'openai'",
        ),
        (
            lambda d: d["story"][0]["usage"].update(model="gpt-9"),
            "story[0].usage.model: expected the code of a model listed under models, got 'gpt-9'",
        ),
        (
            lambda d: d["story"][0]["usage"].update(tokens=5),
            "story[0].usage.tokens: unknown field; expected one of: account, model, request_id, input, "
            "cached_input, cache_write, output, occurred_at",
        ),
        (
            lambda d: d["story"][2].update(issue={}),
            "story[2]: expected exactly one action (purchase, upstream_payment, topup, usage, generate, "
            "charge, close, issue, payment, provision, writeoff, fx), got 2",
        ),
        (
            lambda d: d["story"][2].update(dance={}),
            "story[2].dance: unknown field; expected at and one action of: purchase, upstream_payment, "
            "topup, usage, generate, charge, close, issue, payment, provision, writeoff, fx",
        ),
        (
            lambda d: d["story"][2].update(close={"force": True}),
            "story[2].close.force: unknown field; this action takes no fields",
        ),
        (
            lambda d: d["accounts"][1].update(terms="weekly"),
            "accounts[1].terms: expected one of: prepaid, monthly, quarterly, got 'weekly'",
        ),
        (
            lambda d: d["accounts"][1].update(parent="acme"),
            "accounts[1].parent: expected null or the code of a distributor account listed above, got 'acme'",
        ),
        (
            lambda d: d["accounts"][0]["prices"][0].update(markup="0.1"),
            "accounts[0].prices[0]: expected exactly one of discount or markup",
        ),
        (
            lambda d: d["accounts"][0]["prices"][0]["overrides"].update({"gpt-9": {"input": "1"}}),
            "accounts[0].prices[0].overrides.gpt-9: expected the code of a model listed under providers, "
            "got 'gpt-9'",
        ),
        (
            lambda d: d["accounts"][0].update(tax_rate="1.5"),
            "accounts[0].tax_rate: expected a decimal string from 0 to 1, got '1.5'",
        ),
        (
            lambda d: d["book"].update(currency="XYZ"),
            "book.currency: expected one of: CNY, EUR, GBP, HKD, JPY, SGD, USD, got 'XYZ'",
        ),
        (
            lambda d: d["book"].update(timezone="Mars/Olympus"),
            "book.timezone: expected an IANA time zone (e.g. UTC, Asia/Shanghai), got 'Mars/Olympus'",
        ),
        (
            lambda d: d["book"]["provision_matrix"].pop("61-90"),
            "book.provision_matrix.61-90: expected a decimal string from 0 to 1, "
            "got nothing (the field is missing)",
        ),
        (
            lambda d: d["book"]["dunning"][1].update(days=1),
            "book.dunning[1].days: expected more than 1 (levels in increasing days), got 1",
        ),
        (
            lambda d: d["providers"][0]["models"][0]["prices"][0].update({"from": "2026-13-01"}),
            "providers[0].models[0].prices[0].from: expected a date (YYYY-MM-DD), got '2026-13-01'",
        ),
        (
            lambda d: d["providers"][0]["models"][0]["prices"][0].update(input="0.12345678901"),
            "providers[0].models[0].prices[0].input: expected a non-negative decimal string with at most "
            "10 decimal places, got '0.12345678901'",
        ),
        (
            lambda d: d["story"][3]["generate"].update(to=datetime(2026, 11, 1, tzinfo=UTC)),
            "story[3].generate.to: expected a time not after the event's at (2026-10-31T00:00:00+00:00), "
            "got 2026-11-01T00:00:00+00:00",
        ),
        (
            lambda d: d["story"][3]["generate"].update(calls=0),
            "story[3].generate.calls: expected an integer of at least 1, got 0",
        ),
        (
            lambda d: d["story"].append(
                {
                    "at": datetime(2026, 12, 1, tzinfo=UTC),
                    "writeoff": {"account": "acme", "period": "2026-10-01"},
                }
            ),
            "story[4].writeoff.period: expected a period YYYY-MM or YYYY-Qn, got '2026-10-01'",
        ),
        (
            lambda d: d["story"].append(
                {"at": datetime(2026, 12, 1, tzinfo=UTC), "fx": {"from": "USD", "to": "USD", "rate": "7.1"}}
            ),
            "story[4].fx.to: expected a currency other than USD, got 'USD'",
        ),
        (
            lambda d: d["story"].append(
                {"at": datetime(2026, 12, 1, tzinfo=UTC), "payment": {"account": "acme", "amount": "10"}}
            ),
            "story[4].payment.reference: expected a non-empty string, got nothing (the field is missing)",
        ),
        (lambda d: d.pop("book"), "book: expected a mapping, got nothing (the field is missing)"),
        (
            lambda d: d.update(extras=[]),
            "extras: unknown field; expected one of: book, providers, accounts, story, report",
        ),
    ],
)
def test_a_bad_field_is_refused_with_its_path_and_what_was_expected(mutate: Any, message: str) -> None:
    data = base()
    mutate(data)
    assert refused(data) == message


def test_an_unquoted_yaml_decimal_is_refused_asking_for_a_string() -> None:
    text = BASE.replace('{current: "0.005"', "{current: 0.005")
    with pytest.raises(ScenarioInvalid) as caught:
        scenario_parse_text(text)
    assert caught.value.path == "book.provision_matrix.current"
    assert 'write it as a string, e.g. "0.005"' in caught.value.message


def test_a_timestamp_without_a_zone_is_refused() -> None:
    text = BASE.replace("at: 2026-10-31T00:00:00Z", "at: 2026-10-31 10:00:00")
    with pytest.raises(ScenarioInvalid) as caught:
        scenario_parse_text(text)
    assert caught.value.message == (
        "story[3].at: expected a timestamp with a time zone (e.g. 2026-10-01T00:00:00Z), "
        "got 2026-10-31T10:00:00 without a zone"
    )


def test_a_date_where_a_timestamp_belongs_is_refused() -> None:
    text = BASE.replace("as_of: 2026-12-31T23:59:59Z", "as_of: 2026-12-31")
    with pytest.raises(ScenarioInvalid) as caught:
        scenario_parse_text(text)
    assert caught.value.message == (
        "report.as_of: expected a timestamp with a time zone (e.g. 2026-10-01T00:00:00Z), "
        "got the date 2026-12-31"
    )


def test_a_key_given_twice_is_refused_rather_than_silently_overwritten() -> None:
    text = BASE.replace("name: Platform Ltd", "name: Platform Ltd\n  name: Other Ltd")
    with pytest.raises(ScenarioInvalid) as caught:
        scenario_parse_text(text)
    assert caught.value.message == "line 5: the key 'name' appears twice in one mapping"


def test_broken_yaml_is_refused_with_its_line() -> None:
    with pytest.raises(ScenarioInvalid) as caught:
        scenario_parse_text("book: {code: platform\nstory: [")
    assert caught.value.message.startswith("line ")
    assert "not valid YAML" in caught.value.message


def test_the_public_scenario_passes_validation() -> None:
    scenario = scenario_load(REPO / "scenarios" / "october-2026.yaml")
    assert [a.code for a in scenario.accounts] == ["alpha", "beta", "acme", "devsolo"]
    assert scenario.model_codes() == {"minimax-m2.5", "glm-5", "claude-opus-4.6"}
    assert len(scenario.story) == 14
    # The retried usage carries its own occurred_at; generate spreads 1,000 calls.
    retry = scenario.story[4].params
    assert isinstance(retry, Usage) and retry.occurred_at == datetime(2026, 10, 15, 10, tzinfo=UTC)
    generate = scenario.story[6].params
    assert isinstance(generate, Generate) and generate.calls == 1000


def test_the_public_scenario_matches_the_shared_copy_byte_for_byte() -> None:
    shared = REPO.parent / "shared" / "scenarios"
    if not shared.is_dir():
        pytest.skip("../shared is not beside the repository")
    for name in ("october-2026.yaml", "october-2026.expected.json"):
        assert (REPO / "scenarios" / name).read_bytes() == (shared / name).read_bytes(), name
    # The checker travels with them, so a plain clone can hold its report against the expected one.
    tool = REPO.parent / "shared" / "tools" / "check_report.py"
    assert (REPO / "scenarios" / "check_report.py").read_bytes() == tool.read_bytes()
