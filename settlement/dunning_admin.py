"""Finance's dunning screens: each book's levels (edited as a set through the service), where each
account's reminders go, and the read-only record of every step and state."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from distributor.errors import ApplicationError
from settlement.admin_base import ReadOnlyAdmin
from settlement.models import DunningContact, DunningLevel, DunningState, DunningStep
from settlement.services.dunning import (
    dunning_contact_set,
    dunning_levels,
    dunning_levels_set,
    dunning_levels_validate,
)


def _levels_with(obj: DunningLevel) -> list[tuple[int, str]]:
    """The book's levels with this one added or changed."""
    others = [(lv.days, lv.action) for lv in dunning_levels(book=obj.book) if lv.pk != obj.pk]
    return [*others, (obj.days, obj.action)]


class DunningLevelForm(forms.ModelForm):
    class Meta:
        model = DunningLevel
        fields = ("book", "days", "action")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        book, days, action = data.get("book"), data.get("days"), data.get("action")
        if book is not None and days is not None and action:
            candidate = DunningLevel(pk=self.instance.pk, book=book, days=days, action=action)
            try:
                dunning_levels_validate(_levels_with(candidate))
            except ApplicationError as exc:
                raise forms.ValidationError(exc.message) from exc
        return data

    def validate_unique(self) -> None:
        """Two levels on the same day are refused by `clean` as a set rule, with a clearer message."""


@admin.register(DunningLevel)
class DunningLevelAdmin(admin.ModelAdmin):
    """A change replaces the book's whole set through `dunning_levels_set`, so the rules (distinct
    days, only escalating) are checked on the set, never row by row."""

    form = DunningLevelForm
    list_display = ("book", "days", "action")
    list_filter = ("book",)
    ordering = ("book", "days")

    def save_model(self, request: HttpRequest, obj: DunningLevel, form: Any, change: bool) -> None:
        saved = dunning_levels_set(book=obj.book, levels=_levels_with(obj))
        obj.pk = next(lv.pk for lv in saved if lv.days == obj.days)

    def delete_model(self, request: HttpRequest, obj: DunningLevel) -> None:
        others = [(lv.days, lv.action) for lv in dunning_levels(book=obj.book) if lv.pk != obj.pk]
        dunning_levels_set(book=obj.book, levels=others)


@admin.register(DunningContact)
class DunningContactAdmin(admin.ModelAdmin):
    list_display = ("account", "email", "name")
    search_fields = ("account__code", "email")
    autocomplete_fields = ("account",)

    def save_model(self, request: HttpRequest, obj: DunningContact, form: Any, change: bool) -> None:
        saved = dunning_contact_set(account=obj.account, email=obj.email, name=obj.name)
        obj.pk = saved.pk


@admin.register(DunningState)
class DunningStateAdmin(ReadOnlyAdmin):
    list_display = ("account", "state", "status_set", "since")
    list_filter = ("state",)
    search_fields = ("account__code",)


@admin.register(DunningStep)
class DunningStepAdmin(ReadOnlyAdmin):
    list_display = ("at", "book", "account", "action", "level_days", "days_past_due", "amount_due", "invoice")
    list_filter = ("action", "book")
    search_fields = ("account__code", "invoice__number")
    date_hierarchy = "at"
    list_select_related = ("book", "account", "invoice")
