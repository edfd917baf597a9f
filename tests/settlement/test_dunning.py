"""Dunning (§9, §11.9): the public scenario's late payer (alpha) goes on hold at 30 days past due,
the hold stops its whole subtree at once, reruns change nothing, the reminder tells the customer
what it owes, and paying in full lifts the hold.

The world (tests/settlement/test_close_world.py): October is closed and issued on 2026-11-01.
alpha owes the root 1152.00 on PLATFORM-2026-000001, due 2026-10-31 + 30 net days = 2026-11-30;
beta owes alpha 1200.00 and acme owes beta 1855.00 (both paid in the scenario).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from django.core import mail

from accounts.models import AuditRecord
from distributor.errors import ValidationFailed
from settlement.models import DunningContact, DunningState, DunningStep, Invoice
from settlement.services import authorization_for
from settlement.services.dunning import (
    dunning_levels,
    dunning_levels_set,
    dunning_lift_if_settled,
    dunning_run,
)
from settlement.services.payments import payment_record
from tests.settlement.test_close_world import D, World, october_usage, utc, world_build
from tests.settlement.test_invoicing import issue_all

SCENARIO_LEVELS = [(1, "reminder"), (15, "reminder"), (30, "on_hold"), (60, "suspended")]
Commits = Callable[..., AbstractContextManager[Any]]


@pytest.fixture
def commits(django_capture_on_commit_callbacks: Commits) -> Iterator[Commits]:
    """Run on-commit hooks (the authorize cache refresh) as a real commit would."""

    def run() -> AbstractContextManager[Any]:
        return django_capture_on_commit_callbacks(execute=True)

    yield run


def issued_world(*, timezone: str = "UTC") -> World:
    w = world_build(timezone=timezone)
    october_usage(w, devsolo_calls=10)
    issue_all(w)
    for book in (w.book, w.alpha.own_book, w.beta.own_book):
        dunning_levels_set(book=book, levels=SCENARIO_LEVELS)
    return w


@pytest.fixture
def world(db: None) -> World:
    return issued_world()


def pay(account: Any, amount: str, reference: str, at: str) -> None:
    payment_record(
        account=account, amount=D(amount), currency="USD", received_at=utc(at), reference=reference
    )


def scenario_payments(w: World, commits: Commits) -> None:
    with commits():
        pay(w.acme, "1855.00", "ACME-WIRE-1", "2026-11-10T00:00:00Z")
        pay(w.beta, "1200.00", "BETA-WIRE-1", "2026-12-05T00:00:00Z")
        pay(w.alpha, "500.00", "ALPHA-WIRE-1", "2026-12-10T00:00:00Z")


def run_all(w: World, at: str, commits: Commits) -> list[DunningStep]:
    steps: list[DunningStep] = []
    with commits():
        for book in (w.book, w.alpha.own_book, w.beta.own_book):
            steps += dunning_run(book=book, as_of=utc(at))
    return steps


def answers(w: World) -> dict[str, tuple[bool, str]]:
    w.refresh()
    return {
        a.code: (r["allowed"], r["reason"])
        for a in (w.alpha, w.beta, w.acme, w.devsolo)
        for r in [authorization_for(account=a)]
    }


def test_the_scenario_end_state_alpha_on_hold_stops_its_subtree(world: World, commits: Commits) -> None:
    scenario_payments(world, commits)
    steps = run_all(world, "2026-12-31T23:00:00Z", commits)
    # alpha: 1152.00 - 500.00 = 652.00 open, due 2026-11-30; 2026-12-31 - 2026-11-30 = 31 days past
    # due, so the highest level reached is 30 (on_hold). beta and acme paid: nothing to dun.
    assert [(s.account.code, s.action, s.level_days, s.days_past_due, s.amount_due) for s in steps] == [
        ("alpha", "on_hold", 30, 31, D("652.00"))
    ]
    world.refresh()
    assert world.alpha.status == "on_hold"
    assert answers(world) == {
        "alpha": (False, "on_hold"),
        "beta": (False, "ancestor:alpha"),
        "acme": (False, "ancestor:alpha"),
        "devsolo": (True, "ok"),
    }
    # The status change went through accounts' service: audited as any other.
    audit = AuditRecord.objects.filter(object_id=str(world.alpha.pk), action="account.update").last()
    assert audit is not None and (audit.before["status"], audit.after["status"]) == ("active", "on_hold")
    # One notice, saying what is owed and on which invoice.
    assert len(mail.outbox) == 1
    notice = mail.outbox[0]
    assert "on hold" in notice.subject and "652.00 USD" in notice.subject
    assert "Dear Alpha Reseller" in notice.body
    assert "PLATFORM-2026-000001" in notice.body
    assert "Still open:    652.00 USD" in notice.body
    assert "Invoice total: 1152.00 USD" in notice.body
    assert "Received:      500.00 USD" in notice.body
    assert "30 November 2026 (31 days overdue)" in notice.body
    assert "PLATFORM-2026-000001" in notice.alternatives[0][0]


def test_running_twice_changes_nothing(world: World, commits: Commits) -> None:
    scenario_payments(world, commits)
    run_all(world, "2026-12-31T23:00:00Z", commits)
    steps, emails, state = DunningStep.objects.count(), len(mail.outbox), answers(world)
    assert run_all(world, "2026-12-31T23:00:00Z", commits) == []
    assert run_all(world, "2026-12-31T23:59:59Z", commits) == []
    assert (DunningStep.objects.count(), len(mail.outbox), answers(world)) == (steps, emails, state)


def test_levels_escalate_once_each_and_never_go_back(world: World, commits: Commits) -> None:
    # alpha has paid nothing: 1152.00 open, due 2026-11-30.
    timeline = [
        ("2026-11-30T23:59:59Z", None),  # due today: 0 days past due, nothing yet
        ("2026-12-01T00:00:00Z", ("reminder", 1)),
        ("2026-12-02T00:00:00Z", None),  # still level 1: already sent
        ("2026-12-15T00:00:00Z", ("reminder", 15)),
        ("2026-12-30T00:00:00Z", ("on_hold", 30)),
        ("2026-12-20T00:00:00Z", None),  # a late-running job for an earlier day does not de-escalate
        ("2027-01-29T00:00:00Z", ("suspended", 60)),
    ]
    for at, expected in timeline:
        steps = [s for s in run_all(world, at, commits) if s.account_id == world.alpha.pk]
        assert [(s.action, s.level_days) for s in steps] == ([expected] if expected else []), at
    world.refresh()
    assert world.alpha.status == "suspended"
    # beta (due 2026-11-30) and acme (due 2026-11-15) are 60 and 75 days late: suspended too, and
    # an account's own status is its reason before any ancestor's.
    assert answers(world) == {
        "alpha": (False, "suspended"),
        "beta": (False, "suspended"),
        "acme": (False, "suspended"),
        "devsolo": (True, "ok"),
    }
    # Four emails to alpha: two reminders, the hold notice, the suspension notice; each names the
    # invoice. (acme, due 2026-11-15, and beta, due 2026-11-30, are dunned in their own books too.)
    to_alpha = [m for m in mail.outbox if "Dear Alpha Reseller" in m.body]
    assert [m.subject.split(":")[0] for m in to_alpha] == [
        "Payment reminder",
        "Payment reminder",
        "Your account alpha is on hold",
        "Your account alpha is suspended",
    ]
    assert all("1152.00 USD" in m.body and "PLATFORM-2026-000001" in m.body for m in to_alpha)
    # acme: due 2026-11-15, 2027-01-29 is 75 days past due: suspended in beta's book, with the
    # steps 15 (on 11-30), 30 (on 12-15) and 60 (on 1-29); its reminder at 1 day was never due on
    # a run day (the first run was 15 days past due).
    acme = DunningStep.objects.filter(account=world.acme).order_by("at")
    assert [(s.book.code, s.action, s.level_days, s.days_past_due) for s in acme] == [
        ("beta", "reminder", 15, 15),
        ("beta", "on_hold", 30, 30),
        ("beta", "suspended", 60, 75),
    ]


def test_paying_in_full_lifts_the_hold_and_authorize_allows_again(world: World, commits: Commits) -> None:
    scenario_payments(world, commits)
    run_all(world, "2026-12-31T23:00:00Z", commits)
    with commits():
        # 652.00 was open: paying it leaves no past-due debt, so the hold is lifted at once.
        pay(world.alpha, "652.00", "ALPHA-WIRE-2", "2027-01-04T00:00:00Z")
    world.refresh()
    assert world.alpha.status == "active"
    assert DunningState.objects.get(account=world.alpha).state == "active"
    lifted = DunningStep.objects.get(account=world.alpha, action="lifted")
    assert (lifted.status_before, lifted.status_after) == ("on_hold", "active")
    assert answers(world) == {
        "alpha": (True, "ok"),
        "beta": (True, "ok"),
        "acme": (True, "ok"),
        "devsolo": (True, "ok"),
    }
    # A later run finds nothing past due and takes no step.
    assert run_all(world, "2027-01-05T00:00:00Z", commits) == []


def test_a_part_payment_does_not_lift(world: World, commits: Commits) -> None:
    scenario_payments(world, commits)
    run_all(world, "2026-12-31T23:00:00Z", commits)
    with commits():
        # 652.00 - 300.00 = 352.00 still past due: the hold stays.
        pay(world.alpha, "300.00", "ALPHA-WIRE-2", "2027-01-04T00:00:00Z")
    world.refresh()
    assert world.alpha.status == "on_hold"
    assert dunning_lift_if_settled(account=world.alpha, at=utc("2027-01-04T00:00:00Z")) is False
    with commits():
        pay(world.alpha, "352.00", "ALPHA-WIRE-3", "2027-01-06T00:00:00Z")
    world.refresh()
    assert world.alpha.status == "active"
    # Lifted once: the state is already active, so asking again does nothing.
    assert dunning_lift_if_settled(account=world.alpha, at=utc("2027-01-07T00:00:00Z")) is False
    assert DunningStep.objects.filter(account=world.alpha, action="lifted").count() == 1


def test_a_hold_set_by_finance_is_not_lifted_by_a_payment(world: World, commits: Commits) -> None:
    from accounts.services import account_update

    with commits():
        account_update(account=world.alpha, status="on_hold")
    run_all(world, "2026-12-31T23:00:00Z", commits)  # dunning finds it already on hold
    with commits():
        pay(world.alpha, "1152.00", "ALPHA-WIRE-ALL", "2027-01-04T00:00:00Z")
    world.refresh()
    # Dunning did not write the hold, so it does not undo it; its own state is lifted though.
    assert world.alpha.status == "on_hold"
    assert DunningState.objects.get(account=world.alpha).state == "active"


def test_the_reminder_goes_to_the_accounts_contact(world: World, commits: Commits) -> None:
    DunningContact.objects.create(account=world.alpha, email="ap@alpha.example", name="Alpha AP")
    run_all(world, "2026-12-01T00:00:00Z", commits)
    # alpha's reminder goes to its contact; beta and acme have none: finance gets theirs.
    assert sorted(m.to[0] for m in mail.outbox) == [
        "ap@alpha.example",
        "billing@localhost",
        "billing@localhost",
    ]
    assert DunningStep.objects.get(account=world.alpha).emailed_to == "ap@alpha.example"


def test_a_shanghai_book_counts_days_past_due_in_its_own_dates(db: None, commits: Commits) -> None:
    w = issued_world(timezone="Asia/Shanghai")
    with commits():  # only alpha is late in this test
        pay(w.acme, "1855.00", "ACME-WIRE-1", "2026-11-10T00:00:00Z")
        pay(w.beta, "1200.00", "BETA-WIRE-1", "2026-11-10T00:00:00Z")
    due = Invoice.objects.get(account=w.alpha).due_date
    assert str(due) == "2026-11-30"
    # 2026-11-30T15:59:59Z is 23:59:59 on 30 November in Shanghai (UTC+8): due today, not late.
    assert run_all(w, "2026-11-30T15:59:59Z", commits) == []
    # One second later it is 1 December in Shanghai (still 30 November in UTC): 1 day past due.
    steps = run_all(w, "2026-11-30T16:00:00Z", commits)
    assert [(s.account.code, s.action, s.days_past_due) for s in steps] == [("alpha", "reminder", 1)]


def test_levels_are_validated_and_replaced_as_a_set(world: World) -> None:
    assert [(lv.days, lv.action) for lv in dunning_levels(book=world.book)] == SCENARIO_LEVELS
    dunning_levels_set(book=world.book, levels=[(45, "suspended"), (7, "reminder")])
    assert [(lv.days, lv.action) for lv in dunning_levels(book=world.book)] == [
        (7, "reminder"),
        (45, "suspended"),
    ]
    for bad in (
        [(0, "reminder")],
        [(5, "reminder"), (5, "on_hold")],
        [(5, "email")],
        [(30, "suspended"), (60, "on_hold")],
    ):
        with pytest.raises(ValidationFailed):
            dunning_levels_set(book=world.book, levels=bad)
    assert len(dunning_levels(book=world.book)) == 2  # a refused set changes nothing


def test_the_daily_task_duns_every_book(world: World, commits: Commits) -> None:
    from settlement.tasks import dunning_run_all_task

    scenario_payments(world, commits)
    with commits():
        # Eager in tests: one dunning task per book (platform, alpha, beta).
        assert dunning_run_all_task.delay("2026-12-31T23:00:00+00:00").get() == 3
    world.refresh()
    assert world.alpha.status == "on_hold"
    assert DunningStep.objects.count() == 1


def test_the_admin_edits_levels_through_the_service(world: World, client: Any) -> None:
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_superuser("cfo", "cfo@example.com", "pw"))
    response = client.post(
        "/admin/settlement/dunninglevel/add/", {"book": world.book.pk, "days": 45, "action": "on_hold"}
    )
    assert response.status_code == 302
    assert [(lv.days, lv.action) for lv in dunning_levels(book=world.book)] == [
        (1, "reminder"),
        (15, "reminder"),
        (30, "on_hold"),
        (45, "on_hold"),
        (60, "suspended"),
    ]
    # A suspension before a hold would have the hold undo it: the form refuses it, nothing saved.
    response = client.post(
        "/admin/settlement/dunninglevel/add/", {"book": world.book.pk, "days": 20, "action": "suspended"}
    )
    assert response.status_code == 200
    assert "on_hold at 30 days comes after suspended: dunning only escalates" in response.content.decode()
    assert len(dunning_levels(book=world.book)) == 5


def test_a_write_off_neither_lifts_nor_stops_dunning_and_a_recovery_lifts(
    world: World, commits: Commits
) -> None:
    from settlement.services.provisioning import invoice_write_off

    scenario_payments(world, commits)
    run_all(world, "2026-12-31T23:00:00Z", commits)
    invoice = Invoice.objects.get(account=world.alpha)
    with commits():
        invoice_write_off(invoice=invoice, by=None, at=utc("2027-01-02T00:00:00Z"), reason="alpha went quiet")
    # The book gave up on 652.00; alpha still owes it (§11.14): the hold stays, and at 60 days past
    # due (2026-11-30 + 60 = 2027-01-29) dunning still escalates to suspended.
    assert run_all(world, "2027-01-03T00:00:00Z", commits) == []
    world.refresh()
    assert world.alpha.status == "on_hold"
    steps = run_all(world, "2027-01-29T00:00:00Z", commits)
    assert [(s.action, s.level_days, s.days_past_due, s.amount_due) for s in steps] == [
        ("suspended", 60, 60, D("652.00"))
    ]
    # A part recovery (300.00 of 652.00) leaves 352.00 past due: still suspended.
    with commits():
        pay(world.alpha, "300.00", "ALPHA-RECOVERY-1", "2027-02-01T00:00:00Z")
    world.refresh()
    assert world.alpha.status == "suspended"
    # The rest recovered: nothing past due, lifted at once.
    with commits():
        pay(world.alpha, "352.00", "ALPHA-RECOVERY-2", "2027-02-02T00:00:00Z")
    world.refresh()
    assert world.alpha.status == "active"
    assert answers(world)["acme"] == (True, "ok")
