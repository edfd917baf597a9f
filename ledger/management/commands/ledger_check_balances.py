"""`manage.py ledger_check_balances [--book CODE]`: the books' self-check (§8).

Recomputes every cached balance from the postings and prints any drift, then prints each book's
trial balance per currency. Exits 1 when a balance drifted or a trial balance does not net to zero,
so a cron job or CI step can alert on it.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from distributor.money import normalize
from ledger.models import Book
from ledger.selectors import balance_drift, trial_balance


class Command(BaseCommand):
    help = "Recompute ledger balances from postings; exit non-zero on drift or an unbalanced trial balance."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--book", help="Check only this book (its code)")

    def handle(self, *args: Any, **options: Any) -> None:
        books = Book.objects.order_by("code")
        book = None
        if options.get("book"):
            book = books.filter(code=options["book"]).first()
            if book is None:
                raise CommandError(f"no book {options['book']!r}")
            books = books.filter(pk=book.pk)

        drift = balance_drift(book=book)
        for row in drift:
            cached = (
                "no balance row"
                if row["cached_debits"] is None
                else f"cached Dr {normalize(row['cached_debits'])} Cr {normalize(row['cached_credits'])}"
            )
            self.stdout.write(
                f"DRIFT {row['book']}:{row['account_code']} [{row['counterparty'] or '-'}] "
                f"{row['currency']}: postings Dr {normalize(row['expected_debits'])} "
                f"Cr {normalize(row['expected_credits'])}, "
                f"{cached}"
            )

        unbalanced = 0
        for each in books:
            for line in trial_balance(book=each):
                if line["difference"] != 0:
                    unbalanced += 1
                self.stdout.write(
                    f"trial balance {each.code} {line['currency']}: Dr {normalize(line['debits'])} "
                    f"Cr {normalize(line['credits'])} difference {normalize(line['difference'])}"
                )

        if drift or unbalanced:
            raise CommandError(
                f"{len(drift)} drifted balance row(s), {unbalanced} unbalanced trial balance(s)",
                returncode=1,
            )
        self.stdout.write(self.style.SUCCESS("ledger balances agree with postings"))
