"""`manage.py scenario FILE`: load a scenario, play it on a simulated clock, print the report (§10).

The file is checked as a whole before any database work. Without --keep the run happens in a
throwaway database copied from a migrated template and dropped afterwards; with --keep it plays
into the configured database so that a person can browse the result in the admin.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.test.utils import override_settings

from settlement.scenario.database import throwaway_database
from settlement.scenario.report import report_build, report_json, report_text
from settlement.scenario.runner import ScenarioActionPending, ScenarioRefused, scenario_run
from settlement.scenario.spec import ScenarioInvalid, scenario_load, timestamp_parse

# Exit codes: 2 the file is refused, 3 an action waits for an unbuilt part, 4 a service refused an event.
EXIT_INVALID = 2
EXIT_PENDING = 3
EXIT_REFUSED = 4


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """A `timeout` sends SIGTERM: turn it into SystemExit so the throwaway database is still dropped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Command(BaseCommand):
    help = "Play a scenario file (scenario-format.md) and print its report."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the scenario YAML (or JSON) file")
        parser.add_argument("--format", choices=["text", "json"], default="text")
        parser.add_argument("--keep", action="store_true", help="play into the configured database")
        parser.add_argument("--as-of", dest="as_of", help="report time, e.g. 2026-12-31T23:59:59Z")
        parser.add_argument(
            "--skip-pending",
            action="store_true",
            help="continue past actions whose part of the project is not built yet (with a warning)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            scenario = scenario_load(options["file"])
            as_of = timestamp_parse(options["as_of"]) if options["as_of"] else None
        except ScenarioInvalid as exc:
            raise CommandError(f"scenario refused: {exc.message}", returncode=EXIT_INVALID) from exc

        def warn(message: str) -> None:
            self.stderr.write(message)

        with _sigterm_as_exit(), contextlib.nullcontext() if options["keep"] else throwaway_database():
            try:
                # A scenario's people are fictional: its reminders stay in memory rather than going
                # to the configured backend (the console one would print them into the report).
                with override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"):
                    run = scenario_run(
                        scenario=scenario, as_of=as_of, skip_pending=options["skip_pending"], say=warn
                    )
            except ScenarioActionPending as exc:
                raise CommandError(exc.message, returncode=EXIT_PENDING) from exc
            except ScenarioRefused as exc:
                raise CommandError(exc.message, returncode=EXIT_REFUSED) from exc
            report = report_build(run=run)
        self.stdout.write(
            report_json(report) if options["format"] == "json" else report_text(report), ending=""
        )
        if options["format"] == "json":
            self.stdout.write("")
