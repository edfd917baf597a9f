"""The scenario file format (scenario-format.md), parsed and checked as a whole before any database work.

`scenario_load(path)` / `scenario_parse(data)` turn a YAML (or JSON) document into frozen dataclasses,
or raise `ScenarioInvalid` naming the path of the first bad field and what was expected there, e.g.
`story[3].usage.input: expected a non-negative integer, got -5`. Amounts are decimal strings or
integers, never YAML floats: `0.30` unquoted is already inexact by the time we see it.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

import yaml

from distributor.errors import ValidationFailed
from distributor.money import AMOUNT_DECIMAL_PLACES, MINOR_UNITS, PRICE_DECIMAL_PLACES

TOKEN_CLASSES = ("input", "cached_input", "cache_write", "output")
ACCOUNT_KINDS = ("distributor", "customer")
ACCOUNT_TERMS = ("prepaid", "monthly", "quarterly")
ACCOUNT_STATUSES = ("active", "on_hold", "suspended", "closed")
AGING_BUCKETS = ("current", "1-30", "31-60", "61-90", "91-180", "180+")
DUNNING_ACTIONS = ("reminder", "on_hold", "suspended")
CURRENCIES = tuple(sorted(MINOR_UNITS))
PERIOD_PATTERN = re.compile(r"^\d{4}-(0[1-9]|1[0-2]|Q[1-4])$")
CODE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

T = TypeVar("T")


class ScenarioInvalid(ValidationFailed):
    """The file does not follow the format; `path` names the first bad field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message, details={"path": path})
        self.path = path


# --- the parsed scenario -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DunningLevel:
    days: int
    action: str


@dataclass(frozen=True, slots=True)
class BookSpec:
    code: str
    name: str
    currency: str
    timezone: str = "UTC"
    grace_days: int = 0
    # None: the file gave no matrix, so provisioning uses the project's default.
    provision_matrix: Mapping[str, Decimal] | None = None
    dunning: tuple[DunningLevel, ...] = ()


@dataclass(frozen=True, slots=True)
class ListPriceSpec:
    effective_from: date
    prices: Mapping[str, Decimal]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    code: str
    name: str
    prices: tuple[ListPriceSpec, ...]


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    code: str
    name: str
    currency: str
    models: tuple[ModelSpec, ...]


@dataclass(frozen=True, slots=True)
class PriceListSpec:
    effective_from: date
    rule: str  # "discount" | "markup"
    rate: Decimal
    overrides: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AccountSpec:
    code: str
    name: str
    parent: str | None
    kind: str
    currency: str
    terms: str
    net_days: int = 30
    credit_limit: Decimal | None = None
    tax_rate: Decimal = Decimal(0)
    commitment: Decimal = Decimal(0)
    status: str = "active"
    prices: tuple[PriceListSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class Purchase:
    provider: str
    paid: Decimal
    credit: Decimal
    expires: date | None = None
    promotional: bool = False


@dataclass(frozen=True, slots=True)
class UpstreamPayment:
    provider: str
    amount: Decimal
    reference: str = ""


@dataclass(frozen=True, slots=True)
class Topup:
    account: str
    amount: Decimal
    reference: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    account: str
    model: str
    request_id: str
    input: int = 0
    cached_input: int = 0
    cache_write: int = 0
    output: int = 0
    occurred_at: datetime | None = None  # None: the event's `at`


@dataclass(frozen=True, slots=True)
class Generate:
    account: str
    model: str
    calls: int
    start: datetime  # `from` in the file
    end: datetime  # `to` in the file
    prefix: str
    input: int = 0
    cached_input: int = 0
    cache_write: int = 0
    output: int = 0


@dataclass(frozen=True, slots=True)
class Charge:
    account: str
    description: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Close:
    pass


@dataclass(frozen=True, slots=True)
class Issue:
    pass


@dataclass(frozen=True, slots=True)
class Payment:
    account: str
    amount: Decimal
    reference: str
    invoices: tuple[str, ...] | None = None  # None: oldest first


@dataclass(frozen=True, slots=True)
class Provision:
    pass


@dataclass(frozen=True, slots=True)
class Writeoff:
    account: str
    period: str


@dataclass(frozen=True, slots=True)
class Fx:
    base: str  # `from` in the file
    quote: str  # `to` in the file
    rate: Decimal


Action = (
    Purchase
    | UpstreamPayment
    | Topup
    | Usage
    | Generate
    | Charge
    | Close
    | Issue
    | Payment
    | Provision
    | Writeoff
    | Fx
)


@dataclass(frozen=True, slots=True)
class StoryEvent:
    index: int  # position in the file, for messages and idempotency keys
    at: datetime
    action: str
    params: Action

    @property
    def path(self) -> str:
        return f"story[{self.index}]"


@dataclass(frozen=True, slots=True)
class Scenario:
    book: BookSpec
    providers: tuple[ProviderSpec, ...]
    accounts: tuple[AccountSpec, ...]
    story: tuple[StoryEvent, ...]  # in file order; the runner sorts by `at`
    report_as_of: datetime | None = None

    def model_codes(self) -> set[str]:
        return {m.code for p in self.providers for m in p.models}


# --- loading -------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping instead of keeping the last."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise ScenarioInvalid(
                f"line {key_node.start_mark.line + 1}", f"the key {key!r} appears twice in one mapping"
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def scenario_load(path: str | Path) -> Scenario:
    """Read and check a scenario file; nothing touches the database."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioInvalid("", f"cannot read {path}: {exc.strerror or exc}") from exc
    return scenario_parse_text(text)


def scenario_parse_text(text: str) -> Scenario:
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ScenarioInvalid(where, f"not valid YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise ScenarioInvalid("", f"not valid YAML: {exc}") from exc
    return scenario_parse(data)


# --- value checks --------------------------------------------------------------------------------


def _show(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"the float {value!r}"
    if isinstance(value, datetime):
        return f"the timestamp {value.isoformat()}"
    if isinstance(value, date):
        return f"the date {value.isoformat()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


_MISSING = object()


def _fail(path: str, expected: str, value: object) -> ScenarioInvalid:
    got = "nothing (the field is missing)" if value is _MISSING else _show(value)
    return ScenarioInvalid(path, f"expected {expected}, got {got}")


def _mapping(value: object, path: str, fields: tuple[str, ...]) -> dict[str, Any]:
    """A mapping whose keys are all among `fields` (in the order they are documented)."""
    if not isinstance(value, dict):
        raise _fail(path, "a mapping", value)
    for key in value:
        if key not in fields:
            raise ScenarioInvalid(
                f"{path}.{key}" if path else str(key),
                f"unknown field; expected one of: {', '.join(fields)}",
            )
    return value


def _list(value: object, path: str, *, allow_empty: bool = True) -> list[Any]:
    if not isinstance(value, list) or (not allow_empty and not value):
        raise _fail(path, "a list" if allow_empty else "a non-empty list", value)
    return value


def _get(data: dict[str, Any], key: str, path: str, check: Callable[[object, str], T]) -> T:
    """A required field."""
    return check(data.get(key, _MISSING), f"{path}.{key}" if path else key)


def _opt(data: dict[str, Any], key: str, path: str, check: Callable[[object, str], T], default: T) -> T:
    """An optional field; an explicit null counts as absent."""
    value = data.get(key)
    if value is None:
        return default
    return check(value, f"{path}.{key}" if path else key)


def _string(value: object, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, "a non-empty string", value)
    return value


def _code(value: object, path: str) -> str:
    if not isinstance(value, str) or not CODE_PATTERN.match(value):
        raise _fail(path, "a code (letters, digits, '.', '_' or '-', at most 64)", value)
    return value


def _choice(options: tuple[str, ...]) -> Callable[[object, str], str]:
    def check(value: object, path: str) -> str:
        if not isinstance(value, str) or value not in options:
            raise _fail(path, f"one of: {', '.join(options)}", value)
        return value

    return check


_currency = _choice(CURRENCIES)


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, "true or false", value)
    return value


def _int(*, minimum: int) -> Callable[[object, str], int]:
    what = "a non-negative integer" if minimum == 0 else f"an integer of at least {minimum}"

    def check(value: object, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _fail(path, what, value)
        return value

    return check


_count = _int(minimum=0)
_positive_count = _int(minimum=1)


def _decimal(
    *,
    minimum: Decimal | None = Decimal(0),
    positive: bool = False,
    maximum: Decimal | None = None,
    places: int = AMOUNT_DECIMAL_PLACES,
) -> Callable[[object, str], Decimal]:
    if positive:
        what = "a positive decimal string"
    elif minimum is not None and maximum is not None:
        what = f"a decimal string from {minimum} to {maximum}"
    elif minimum is not None:
        what = "a non-negative decimal string"
    else:
        what = "a decimal string"

    def check(value: object, path: str) -> Decimal:
        if isinstance(value, float):
            raise ScenarioInvalid(
                path,
                f"expected {what} in quotes, got {_show(value)}: YAML reads an unquoted decimal as a "
                f'binary float; write it as a string, e.g. "{value}"',
            )
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _fail(path, what, value)
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            raise _fail(path, what, value) from None
        if not amount.is_finite():
            raise _fail(path, what, value)
        if (
            (positive and amount <= 0)
            or (minimum is not None and amount < minimum)
            or (maximum is not None and amount > maximum)
        ):
            raise _fail(path, what, value)
        if amount.as_tuple().exponent < -places:  # type: ignore[operator]
            raise _fail(path, f"{what} with at most {places} decimal places", value)
        return amount

    return check


_amount = _decimal()
_positive_amount = _decimal(positive=True)
_price = _decimal(places=PRICE_DECIMAL_PLACES)
_rate = _decimal(minimum=Decimal(0), maximum=Decimal(1))


def _date(value: object, path: str) -> date:
    what = "a date (YYYY-MM-DD)"
    if isinstance(value, datetime):
        raise _fail(path, what, value)
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise _fail(path, what, value)


def _timestamp(value: object, path: str) -> datetime:
    what = "a timestamp with a time zone (e.g. 2026-10-01T00:00:00Z)"
    parsed: datetime | None = None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = None
    if parsed is None:
        raise _fail(path, what, value)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ScenarioInvalid(path, f"expected {what}, got {parsed.isoformat()} without a zone")
    return parsed


def _timezone(value: object, path: str) -> str:
    if isinstance(value, str):
        try:
            zoneinfo.ZoneInfo(value)
            return value
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    raise _fail(path, "an IANA time zone (e.g. UTC, Asia/Shanghai)", value)


def _period(value: object, path: str) -> str:
    if not isinstance(value, str) or not PERIOD_PATTERN.match(value):
        raise _fail(path, "a period YYYY-MM or YYYY-Qn", value)
    return value


def _no_fields(value: object, path: str) -> None:
    if value is None or value == {}:
        return
    if isinstance(value, dict):
        raise ScenarioInvalid(f"{path}.{next(iter(value))}", "unknown field; this action takes no fields")
    raise _fail(path, "no fields ({} or nothing)", value)


# --- sections ------------------------------------------------------------------------------------


def _book(value: object) -> BookSpec:
    path = "book"
    data = _mapping(
        value, path, ("code", "name", "currency", "timezone", "grace_days", "provision_matrix", "dunning")
    )
    matrix: dict[str, Decimal] | None = None
    if data.get("provision_matrix") is not None:
        raw = _mapping(data["provision_matrix"], f"{path}.provision_matrix", AGING_BUCKETS)
        matrix = {b: _get(raw, b, f"{path}.provision_matrix", _rate) for b in AGING_BUCKETS}
    levels: list[DunningLevel] = []
    dunning: list[Any] = _opt(data, "dunning", path, _list, [])
    for i, item in enumerate(dunning):
        where = f"{path}.dunning[{i}]"
        level = _mapping(item, where, ("days", "action"))
        days = _get(level, "days", where, _positive_count)
        if levels and days <= levels[-1].days:
            raise _fail(f"{where}.days", f"more than {levels[-1].days} (levels in increasing days)", days)
        levels.append(DunningLevel(days=days, action=_get(level, "action", where, _choice(DUNNING_ACTIONS))))
    return BookSpec(
        code=_get(data, "code", path, _code),
        name=_get(data, "name", path, _string),
        currency=_get(data, "currency", path, _currency),
        timezone=_opt(data, "timezone", path, _timezone, "UTC"),
        grace_days=_opt(data, "grace_days", path, _count, 0),
        provision_matrix=matrix,
        dunning=tuple(levels),
    )


def _class_prices(
    data: dict[str, Any], path: str, *, keys: tuple[str, ...] = TOKEN_CLASSES
) -> dict[str, Decimal]:
    return {c: _get(data, c, path, _price) for c in keys if c in data and data[c] is not None}


def _providers(value: object) -> tuple[ProviderSpec, ...]:
    providers: list[ProviderSpec] = []
    provider_codes: set[str] = set()
    model_codes: set[str] = set()
    for i, item in enumerate(_list(value, "providers")):
        path = f"providers[{i}]"
        data = _mapping(item, path, ("code", "name", "currency", "models"))
        code = _get(data, "code", path, _code)
        if code in provider_codes:
            raise _fail(f"{path}.code", "a provider code not used above", code)
        provider_codes.add(code)
        name = _get(data, "name", path, _string)
        currency = _get(data, "currency", path, _currency)
        models: list[ModelSpec] = []
        for j, raw_model in enumerate(_get(data, "models", path, _list)):
            mpath = f"{path}.models[{j}]"
            mdata = _mapping(raw_model, mpath, ("code", "name", "prices"))
            mcode = _get(mdata, "code", mpath, _code)
            if mcode in model_codes:
                raise _fail(f"{mpath}.code", "a model code not used above (model codes are global)", mcode)
            model_codes.add(mcode)
            versions: list[ListPriceSpec] = []
            for k, raw_price in enumerate(
                _get(mdata, "prices", mpath, lambda v, p: _list(v, p, allow_empty=False))
            ):
                ppath = f"{mpath}.prices[{k}]"
                pdata = _mapping(raw_price, ppath, ("from", *TOKEN_CLASSES))
                start = _get(pdata, "from", ppath, _date)
                if any(v.effective_from == start for v in versions):
                    raise _fail(f"{ppath}.from", "a date not used by another price of this model", start)
                prices = _class_prices(pdata, ppath)
                if not prices:
                    raise _fail(ppath, f"at least one price among {', '.join(TOKEN_CLASSES)}", "none")
                versions.append(ListPriceSpec(effective_from=start, prices=prices))
            models.append(
                ModelSpec(code=mcode, name=_opt(mdata, "name", mpath, _string, mcode), prices=tuple(versions))
            )
        providers.append(ProviderSpec(code=code, name=name, currency=currency, models=tuple(models)))
    return tuple(providers)


_ACCOUNT_FIELDS = (
    "code",
    "name",
    "parent",
    "kind",
    "currency",
    "terms",
    "net_days",
    "credit_limit",
    "tax_rate",
    "commitment",
    "status",
    "prices",
)


def _price_lists(value: object, path: str, model_codes: set[str]) -> tuple[PriceListSpec, ...]:
    lists: list[PriceListSpec] = []
    for i, item in enumerate(_list(value, path)):
        where = f"{path}[{i}]"
        data = _mapping(item, where, ("from", "discount", "markup", "overrides"))
        start = _get(data, "from", where, _date)
        if any(p.effective_from == start for p in lists):
            raise _fail(f"{where}.from", "a date not used by another price list of this account", start)
        has_discount, has_markup = data.get("discount") is not None, data.get("markup") is not None
        if has_discount == has_markup:
            raise ScenarioInvalid(where, "expected exactly one of discount or markup")
        rule = "discount" if has_discount else "markup"
        rate = _get(data, rule, where, _rate if rule == "discount" else _decimal(places=10))
        overrides: dict[str, dict[str, Decimal]] = {}
        raw_overrides = data.get("overrides") or {}
        if not isinstance(raw_overrides, dict):
            raise _fail(f"{where}.overrides", "a mapping of model code to prices", raw_overrides)
        for model, raw in raw_overrides.items():
            opath = f"{where}.overrides.{model}"
            if model not in model_codes:
                raise _fail(opath, "the code of a model listed under providers", model)
            prices = _class_prices(_mapping(raw, opath, TOKEN_CLASSES), opath)
            if not prices:
                raise _fail(opath, f"at least one price among {', '.join(TOKEN_CLASSES)}", "none")
            overrides[model] = prices
        lists.append(PriceListSpec(effective_from=start, rule=rule, rate=rate, overrides=overrides))
    return tuple(lists)


def _accounts(value: object, model_codes: set[str], book_currency: str) -> tuple[AccountSpec, ...]:
    accounts: list[AccountSpec] = []
    kinds: dict[str, str] = {}
    for i, item in enumerate(_list(value, "accounts")):
        path = f"accounts[{i}]"
        data = _mapping(item, path, _ACCOUNT_FIELDS)
        code = _get(data, "code", path, _code)
        if code in kinds:
            raise _fail(f"{path}.code", "an account code not used above", code)
        parent = data.get("parent")
        if parent is not None and kinds.get(parent) != "distributor":
            # Parents come first so that the tree can be built top-down in file order.
            raise _fail(f"{path}.parent", "null or the code of a distributor account listed above", parent)
        kind = _get(data, "kind", path, _choice(ACCOUNT_KINDS))
        kinds[code] = kind
        accounts.append(
            AccountSpec(
                code=code,
                name=_get(data, "name", path, _string),
                parent=parent,
                kind=kind,
                currency=_opt(data, "currency", path, _currency, book_currency),
                terms=_get(data, "terms", path, _choice(ACCOUNT_TERMS)),
                net_days=_opt(data, "net_days", path, _count, 30),
                credit_limit=_opt(data, "credit_limit", path, _amount, None),
                tax_rate=_opt(data, "tax_rate", path, _rate, Decimal(0)),
                commitment=_opt(data, "commitment", path, _amount, Decimal(0)),
                status=_opt(data, "status", path, _choice(ACCOUNT_STATUSES), "active"),
                prices=_price_lists(data.get("prices") or [], f"{path}.prices", model_codes),
            )
        )
    return tuple(accounts)


@dataclass(frozen=True, slots=True)
class _Refs:
    providers: set[str]
    models: set[str]
    accounts: set[str]

    def check(self, kind: str) -> Callable[[object, str], str]:
        known = getattr(self, f"{kind}s")

        def check(value: object, path: str) -> str:
            if not isinstance(value, str) or value not in known:
                article = "an" if kind[0] in "aeiou" else "a"
                raise _fail(path, f"the code of {article} {kind} listed under {kind}s", value)
            return value

        return check


def _tokens(data: dict[str, Any], path: str) -> dict[str, int]:
    return {c: _opt(data, c, path, _count, 0) for c in TOKEN_CLASSES}


def _action(action: str, value: object, path: str, at: datetime, refs: _Refs) -> Action:
    if action == "purchase":
        d = _mapping(value, path, ("provider", "paid", "credit", "expires", "promotional"))
        return Purchase(
            provider=_get(d, "provider", path, refs.check("provider")),
            paid=_get(d, "paid", path, _amount),
            credit=_get(d, "credit", path, _positive_amount),
            expires=_opt(d, "expires", path, _date, None),
            promotional=_opt(d, "promotional", path, _bool, False),
        )
    if action == "upstream_payment":
        d = _mapping(value, path, ("provider", "amount", "reference"))
        return UpstreamPayment(
            provider=_get(d, "provider", path, refs.check("provider")),
            amount=_get(d, "amount", path, _positive_amount),
            reference=_opt(d, "reference", path, _string, ""),
        )
    if action == "topup":
        d = _mapping(value, path, ("account", "amount", "reference"))
        return Topup(
            account=_get(d, "account", path, refs.check("account")),
            amount=_get(d, "amount", path, _positive_amount),
            reference=_opt(d, "reference", path, _string, ""),
        )
    if action == "usage":
        d = _mapping(value, path, ("account", "model", "request_id", *TOKEN_CLASSES, "occurred_at"))
        return Usage(
            account=_get(d, "account", path, refs.check("account")),
            model=_get(d, "model", path, refs.check("model")),
            request_id=_get(d, "request_id", path, _string),
            **_tokens(d, path),
            occurred_at=_opt(d, "occurred_at", path, _timestamp, None),
        )
    if action == "generate":
        d = _mapping(value, path, ("account", "model", "calls", *TOKEN_CLASSES, "from", "to", "prefix"))
        account = _get(d, "account", path, refs.check("account"))
        model = _get(d, "model", path, refs.check("model"))
        calls = _get(d, "calls", path, _positive_count)
        tokens = _tokens(d, path)
        start = _get(d, "from", path, _timestamp)
        end = _get(d, "to", path, _timestamp)
        if end <= start:
            raise _fail(f"{path}.to", f"a time after from ({start.isoformat()})", end)
        if at < end:
            raise ScenarioInvalid(
                f"{path}.to",
                f"expected a time not after the event's at ({at.isoformat()}), got {end.isoformat()}",
            )
        return Generate(
            account=account,
            model=model,
            calls=calls,
            start=start,
            end=end,
            prefix=_get(d, "prefix", path, _string),
            **tokens,
        )
    if action == "charge":
        d = _mapping(value, path, ("account", "description", "amount"))
        return Charge(
            account=_get(d, "account", path, refs.check("account")),
            description=_get(d, "description", path, _string),
            amount=_get(d, "amount", path, _positive_amount),
        )
    if action in ("close", "issue", "provision"):
        _no_fields(value, path)
        return Close() if action == "close" else Issue() if action == "issue" else Provision()
    if action == "payment":
        d = _mapping(value, path, ("account", "amount", "reference", "invoices"))
        raw_invoices = d.get("invoices")
        invoices = None
        if raw_invoices is not None:
            items = _list(raw_invoices, f"{path}.invoices", allow_empty=False)
            invoices = tuple(_period(p, f"{path}.invoices[{k}]") for k, p in enumerate(items))
        return Payment(
            account=_get(d, "account", path, refs.check("account")),
            amount=_get(d, "amount", path, _positive_amount),
            reference=_get(d, "reference", path, _string),
            invoices=invoices,
        )
    if action == "writeoff":
        d = _mapping(value, path, ("account", "period"))
        return Writeoff(
            account=_get(d, "account", path, refs.check("account")),
            period=_get(d, "period", path, _period),
        )
    assert action == "fx"
    d = _mapping(value, path, ("from", "to", "rate"))
    base = _get(d, "from", path, _currency)
    quote = _get(d, "to", path, _currency)
    if quote == base:
        raise _fail(f"{path}.to", f"a currency other than {base}", quote)
    return Fx(base=base, quote=quote, rate=_get(d, "rate", path, _decimal(positive=True, places=10)))


ACTIONS = (
    "purchase",
    "upstream_payment",
    "topup",
    "usage",
    "generate",
    "charge",
    "close",
    "issue",
    "payment",
    "provision",
    "writeoff",
    "fx",
)


def _story(value: object, refs: _Refs) -> tuple[StoryEvent, ...]:
    events: list[StoryEvent] = []
    for i, item in enumerate(_list(value, "story")):
        path = f"story[{i}]"
        if not isinstance(item, dict):
            raise _fail(path, "a mapping with at and one action", item)
        for key in item:
            if key != "at" and key not in ACTIONS:
                raise ScenarioInvalid(
                    f"{path}.{key}", f"unknown field; expected at and one action of: {', '.join(ACTIONS)}"
                )
        at = _get(item, "at", path, _timestamp)
        actions = [k for k in item if k != "at"]
        if len(actions) != 1:
            raise ScenarioInvalid(
                path, f"expected exactly one action ({', '.join(ACTIONS)}), got {len(actions)}"
            )
        action = actions[0]
        params = _action(action, item[action], f"{path}.{action}", at, refs)
        events.append(StoryEvent(index=i, at=at, action=action, params=params))
    return tuple(events)


def scenario_parse(data: object) -> Scenario:
    """Check a loaded document against the whole format; the first bad field raises."""
    top = _mapping(data, "", ("book", "providers", "accounts", "story", "report"))
    book = _book(top.get("book", _MISSING))
    providers = _providers(top.get("providers") or [])
    model_codes = {m.code for p in providers for m in p.models}
    accounts = _accounts(top.get("accounts") or [], model_codes, book.currency)
    refs = _Refs(
        providers={p.code for p in providers}, models=model_codes, accounts={a.code for a in accounts}
    )
    story = _story(top.get("story") or [], refs)
    as_of = None
    if top.get("report") is not None:
        report = _mapping(top["report"], "report", ("as_of",))
        as_of = _opt(report, "as_of", "report", _timestamp, None)
    return Scenario(book=book, providers=providers, accounts=accounts, story=story, report_as_of=as_of)


def timestamp_parse(value: str, *, path: str = "--as-of") -> datetime:
    """A command-line timestamp, held to the same rule as the file's (a zone is required)."""
    return _timestamp(value, path)
