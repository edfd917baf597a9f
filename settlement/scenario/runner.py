"""Plays a parsed scenario on a simulated clock through the project's own services.

The world (book, providers and their list prices, the account tree and its price lists) is built
first; then the story runs in order of `at` (equal times keep file order), each action dispatched
through `HANDLERS`. Handlers call services only, never the ORM, and pass the event's `at` as the
time. Service modules are imported inside the handlers: an app that has not landed yet makes its
actions `ScenarioActionPending` instead of breaking the whole command at import time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from distributor.errors import ApplicationError
from ledger.models import Book
from settlement.scenario import spec
from settlement.scenario.spec import Scenario, StoryEvent


class ScenarioActionPending(ApplicationError):
    """The action needs a part of the project that is not built yet; the run does not pretend."""

    code = "scenario_action_pending"


class ScenarioRefused(ApplicationError):
    """A service refused a story event (a business rule); the run stops there."""

    code = "scenario_refused"


@dataclass
class ScenarioRun:
    """The state of one run: the clock, what the world setup created, and what happened."""

    scenario: Scenario
    as_of: datetime
    skip_pending: bool = False
    say: Callable[[str], None] = print
    now: datetime | None = None
    book: Book | None = None
    providers: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    accounts: dict[str, Any] = field(default_factory=dict)
    # Counters that later report sections read (ingestion, issue 4).
    ingestion: dict[str, int] = field(default_factory=lambda: {"accepted": 0, "duplicates": 0, "rejected": 0})
    pending: list[str] = field(default_factory=list)
    not_played: list[StoryEvent] = field(default_factory=list)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.scenario.book.timezone)

    @property
    def root(self) -> Book:
        assert self.book is not None, "the book is created before anything else"
        return self.book

    def day_start(self, day: date) -> datetime:
        """A `from:` date means the start of that day in the book's zone."""
        return datetime.combine(day, time(0), tzinfo=self.zone)

    def account(self, code: str, *, action: str) -> Any:
        try:
            return self.accounts[code]
        except KeyError:
            raise ScenarioActionPending(
                f"{action} needs account {code!r}, which was not created (accounts wait for issue 3)"
            ) from None

    def provider(self, code: str, *, action: str) -> Any:
        try:
            return self.providers[code]
        except KeyError:
            raise ScenarioActionPending(
                f"{action} needs provider {code!r}, which was not created (procurement waits for issue 3)"
            ) from None


def _service(module: str, name: str, *, action: str, waits_for: str) -> Callable[..., Any]:
    """The service function `module.name`, or ScenarioActionPending if it has not landed yet."""
    found = _optional_service(module, name)
    if found is None:
        raise ScenarioActionPending(f"{action} waits for {waits_for} ({module}.{name} is not there yet)")
    return found


def _optional_service(module: str, name: str) -> Callable[..., Any] | None:
    try:
        loaded = importlib.import_module(module)
    except ImportError:
        return None
    found = getattr(loaded, name, None)
    return found if callable(found) else None


# --- the world -----------------------------------------------------------------------------------


def _book_build(run: ScenarioRun) -> None:
    from ledger.services import book_create

    b = run.scenario.book
    run.book = book_create(
        code=b.code, name=b.name, currency=b.currency, timezone=b.timezone, grace_days=b.grace_days
    )


def _providers_build(run: ScenarioRun) -> None:
    waits = "issue 3: procurement"
    provider_create = _service("procurement.services", "provider_create", action="providers", waits_for=waits)
    model_create = _service(
        "procurement.services", "provider_model_create", action="providers", waits_for=waits
    )
    list_price_set = _service("procurement.services", "list_price_set", action="providers", waits_for=waits)
    for p in run.scenario.providers:
        provider = provider_create(code=p.code, name=p.name, currency=p.currency)
        run.providers[p.code] = provider
        for m in p.models:
            model = model_create(provider=provider, code=m.code, name=m.name)
            run.models[m.code] = model
            for version in m.prices:
                list_price_set(
                    model=model,
                    effective_from=run.day_start(version.effective_from),
                    prices=dict(version.prices),
                )


def _accounts_build(run: ScenarioRun) -> None:
    waits = "issue 3: the account tree"
    account_create = _service("accounts.services", "account_create", action="accounts", waits_for=waits)
    price_list_set = _service("accounts.services", "price_list_set", action="accounts", waits_for=waits)
    for a in run.scenario.accounts:
        account = account_create(
            root_book=run.root,
            code=a.code,
            name=a.name,
            parent=run.accounts[a.parent] if a.parent else None,
            kind=a.kind,
            currency=a.currency,
            terms=a.terms,
            net_days=a.net_days,
            credit_limit=a.credit_limit,
            tax_rate=a.tax_rate,
            commitment=a.commitment,
            status=a.status,
        )
        run.accounts[a.code] = account
        for price_list in a.prices:
            price_list_set(
                account=account,
                effective_from=run.day_start(price_list.effective_from),
                rule=price_list.rule,
                rate=price_list.rate,
                overrides={model: dict(prices) for model, prices in price_list.overrides.items()} or None,
            )


# --- story handlers ------------------------------------------------------------------------------


def _purchase(run: ScenarioRun, event: StoryEvent) -> None:
    p = event.params
    assert isinstance(p, spec.Purchase)
    record = _service(
        "procurement.services", "quota_purchase_record", action="purchase", waits_for="issue 3: procurement"
    )
    provider = run.provider(p.provider, action="purchase")
    record(
        book=run.root,
        provider=provider,
        paid=p.paid,
        credit=p.credit,
        currency=provider.currency,
        purchased_at=event.at,
        expires_on=p.expires,
        promotional=p.promotional,
        reference=f"scenario:{event.path}",
    )


def _upstream_payment(run: ScenarioRun, event: StoryEvent) -> None:
    p = event.params
    assert isinstance(p, spec.UpstreamPayment)
    record = _service(
        "procurement.services",
        "upstream_payment_record",
        action="upstream_payment",
        waits_for="issue 3: procurement",
    )
    provider = run.provider(p.provider, action="upstream_payment")
    record(
        book=run.root,
        provider=provider,
        amount=p.amount,
        currency=provider.currency,
        paid_at=event.at,
        reference=p.reference or f"scenario:{run.root.code}:{event.path}",
    )


def _topup(run: ScenarioRun, event: StoryEvent) -> None:
    p = event.params
    assert isinstance(p, spec.Topup)
    record = _service("accounts.services", "topup_record", action="topup", waits_for="issue 3: accounts")
    record(
        account=run.account(p.account, action="topup"), amount=p.amount, at=event.at, reference=p.reference
    )


def _fx(run: ScenarioRun, event: StoryEvent) -> None:
    p = event.params
    assert isinstance(p, spec.Fx)
    rate_set = _service(
        "ledger.services", "exchange_rate_set", action="fx", waits_for="issue 3: exchange rates"
    )
    rate_set(base=p.base, quote=p.quote, rate=p.rate, effective_at=event.at)


def scenario_books(run: ScenarioRun) -> list[Book]:
    """The root and every distributor's own book, root first. A distributor's own book carries its
    code, so they are found by code (which keeps a --keep run off unrelated books in the database).
    Close, issue and provisioning run over them book by book, as the beat jobs do; the report lists
    them in this order."""
    codes = {run.scenario.book.code} | {a.code for a in run.scenario.accounts if a.kind == "distributor"}
    books = Book.objects.filter(code__in=codes).order_by("pk")
    return sorted(books, key=lambda b: (b.code != run.scenario.book.code, b.pk))


def _ingest(run: ScenarioRun, events: list[dict[str, Any]], received_at: datetime) -> None:
    """One batch through the ingestion service with the root's service key. A rejected event does
    not stop the story (scenario-format.md): it is counted and its reason printed."""
    ingest = _service("settlement.services", "usage_ingest", action="usage", waits_for="issue 4: ingestion")
    result = ingest(events=events, service=True, received_at=received_at)
    run.ingestion["accepted"] += result.accepted
    run.ingestion["duplicates"] += result.duplicates
    run.ingestion["rejected"] += result.rejected
    for rejection in result.rejections:
        run.say(
            f"rejected usage {rejection.get('request_id')}: {rejection.get('code')}: {rejection.get('reason')}"
        )


def _usage_event(
    *, account: str, model: str, request_id: str, occurred_at: datetime, tokens: spec.Usage | spec.Generate
) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "account": account,
        "model": model,
        "occurred_at": occurred_at.isoformat(),
        "input_tokens": tokens.input,
        "cached_input_tokens": tokens.cached_input,
        "cache_write_tokens": tokens.cache_write,
        "output_tokens": tokens.output,
    }


def _usage(run: ScenarioRun, event: StoryEvent) -> None:
    p = event.params
    assert isinstance(p, spec.Usage)
    occurred_at = p.occurred_at or event.at
    _ingest(
        run,
        [
            _usage_event(
                account=p.account, model=p.model, request_id=p.request_id, occurred_at=occurred_at, tokens=p
            )
        ],
        event.at,
    )


GENERATE_BATCH = 1000


def _generate(run: ScenarioRun, event: StoryEvent) -> None:
    """`calls` events spread evenly over [from, to): call i happens at from + i x (to - from) / calls."""
    p = event.params
    assert isinstance(p, spec.Generate)
    span = p.end - p.start
    events = [
        _usage_event(
            account=p.account,
            model=p.model,
            request_id=f"{p.prefix}-{i}",
            occurred_at=p.start + span * i // p.calls,
            tokens=p,
        )
        for i in range(p.calls)
    ]
    for first in range(0, len(events), GENERATE_BATCH):
        _ingest(run, events[first : first + GENERATE_BATCH], event.at)


def _charge(run: ScenarioRun, event: StoryEvent) -> None:
    p = event.params
    assert isinstance(p, spec.Charge)
    record = _service(
        "settlement.services.invoicing",
        "manual_charge_record",
        action="charge",
        waits_for="issue 5: invoicing",
    )
    record(
        account=run.account(p.account, action="charge"),
        description=p.description,
        amount=p.amount,
        at=event.at,
        reference=f"scenario:{event.path}",
    )


def _close(run: ScenarioRun, event: StoryEvent) -> None:
    close_run = _service(
        "settlement.services.close", "close_run", action="close", waits_for="issue 5: the close"
    )
    for book in scenario_books(run):
        close_run(book=book, now=event.at)


def _issue(run: ScenarioRun, event: StoryEvent) -> None:
    issue_due = _service(
        "settlement.services.invoicing", "drafts_issue_due", action="issue", waits_for="issue 5: invoicing"
    )
    for book in scenario_books(run):
        issue_due(book=book, now=event.at)


def _payment(run: ScenarioRun, event: StoryEvent) -> None:
    p = event.params
    assert isinstance(p, spec.Payment)
    record = _service(
        "settlement.services.payments", "payment_record", action="payment", waits_for="issue 5: payments"
    )
    account = run.account(p.account, action="payment")
    record(
        account=account,
        amount=p.amount,
        currency=account.currency,
        received_at=event.at,
        reference=p.reference,
        invoice_periods=list(p.invoices) if p.invoices is not None else None,
    )


def _provision(run: ScenarioRun, event: StoryEvent) -> None:
    """Aging, bad-debt provisioning and dunning as of `at`, book by book (the month-end jobs)."""
    waits = "issue 6: provisioning and dunning"
    provision_run = _service(
        "settlement.services.provisioning", "provision_run", action="provision", waits_for=waits
    )
    dunning_run = _service("settlement.services.dunning", "dunning_run", action="provision", waits_for=waits)
    for book in scenario_books(run):
        provision_run(book=book, as_of=event.at)
        dunning_run(book=book, as_of=event.at)


def _writeoff(run: ScenarioRun, event: StoryEvent) -> None:
    p = event.params
    assert isinstance(p, spec.Writeoff)
    from settlement.models import Invoice

    account = run.account(p.account, action="writeoff")
    invoice = Invoice.objects.filter(account=account, label=p.period).exclude(status="void").first()
    if invoice is None:
        raise ScenarioRefused(f"{p.account} has no invoice for {p.period} to write off")
    write_off = _service(
        "settlement.services.provisioning",
        "invoice_write_off",
        action="writeoff",
        waits_for="issue 6: write-offs",
    )
    write_off(invoice=invoice, by=None, at=event.at, reason=f"scenario:{event.path}")


def _risk_policies_set(run: ScenarioRun) -> None:
    """Every scenario book gets the root's provision matrix and dunning levels (scenario-format.md)."""
    b = run.scenario.book
    if b.provision_matrix:
        matrix_set = _service(
            "settlement.services.provisioning", "provision_matrix_set", action="book", waits_for="issue 6"
        )
        # In force from the scenario's first day, so that every provisioning run of the story uses it.
        first = min((e.at for e in run.scenario.story), default=run.as_of).astimezone(run.zone).date()
        for book in scenario_books(run):
            matrix_set(book=book, rates=dict(b.provision_matrix), effective_from=first)
    if b.dunning:
        levels_set = _service(
            "settlement.services.dunning", "dunning_levels_set", action="book", waits_for="issue 6"
        )
        for book in scenario_books(run):
            levels_set(book=book, levels=[(level.days, level.action) for level in b.dunning])


HANDLERS: dict[str, Callable[[ScenarioRun, StoryEvent], None]] = {
    "purchase": _purchase,
    "upstream_payment": _upstream_payment,
    "topup": _topup,
    "fx": _fx,
    "usage": _usage,
    "generate": _generate,
    "charge": _charge,
    "close": _close,
    "issue": _issue,
    "payment": _payment,
    "provision": _provision,
    "writeoff": _writeoff,
}
assert set(HANDLERS) == set(spec.ACTIONS), "every action of the format has a handler"


# --- the run -------------------------------------------------------------------------------------


def _clock_advance(run: ScenarioRun, to: datetime) -> None:
    """Move the simulated clock; purchases whose expiry the clock passes lapse (breakage, §3)."""
    run.now = to
    expire = _optional_service("procurement.services", "purchases_expire")
    if expire is not None and run.providers:
        expire(book=run.root, now=to)


def _pending(run: ScenarioRun, where: str, exc: ScenarioActionPending) -> None:
    message = f"{where}: pending: {exc.message}"
    if not run.skip_pending:
        raise ScenarioActionPending(message, details=exc.details) from exc
    run.pending.append(message)
    run.say(f"warning: skipped {message}")


def story_order(scenario: Scenario) -> list[StoryEvent]:
    """Events by `at`; sorted() is stable, so equal times keep file order."""
    return sorted(scenario.story, key=lambda e: e.at)


def scenario_run(
    *,
    scenario: Scenario,
    as_of: datetime | None = None,
    skip_pending: bool = False,
    say: Callable[[str], None] = print,
) -> ScenarioRun:
    """Build the world and play the story up to the report time.

    The report time is `as_of`, else the file's `report.as_of`, else the last event's `at`. Events
    after it are not played: the clock stops at the report time. Raises ScenarioActionPending (unless
    `skip_pending`) or ScenarioRefused, naming the event.
    """
    ordered = story_order(scenario)
    report_at = as_of or scenario.report_as_of or (ordered[-1].at if ordered else None)
    if report_at is None:
        raise ScenarioRefused("the scenario has no story and no report.as_of: give --as-of")
    run = ScenarioRun(scenario=scenario, as_of=report_at, skip_pending=skip_pending, say=say)

    _book_build(run)
    for section, build in (
        ("providers", _providers_build),
        ("accounts", _accounts_build),
        ("book", _risk_policies_set),
    ):
        if section != "book" and not getattr(scenario, section):
            continue
        try:
            build(run)
        except ScenarioActionPending as exc:
            _pending(run, section, exc)
        except ApplicationError as exc:
            raise ScenarioRefused(f"{section}: {exc.message}", details=exc.details) from exc
        except Exception as exc:
            exc.add_note(f"while building the scenario's {section}")
            raise

    for event in ordered:
        if event.at > report_at:
            run.not_played.append(event)
            continue
        where = f"{event.path} ({event.at.isoformat()} {event.action})"
        try:
            _clock_advance(run, event.at)
            HANDLERS[event.action](run, event)
        except ScenarioActionPending as exc:
            _pending(run, where, exc)
        except ApplicationError as exc:
            raise ScenarioRefused(f"{where}: {exc.message}", details=exc.details) from exc
        except Exception as exc:
            # A bug, not a business rule: keep the traceback, but say which event hit it.
            exc.add_note(f"while playing {where}")
            raise
    if run.not_played:
        say(
            f"note: {len(run.not_played)} event(s) after the report time {report_at.isoformat()} were not played"
        )
    _clock_advance(run, report_at)
    return run
