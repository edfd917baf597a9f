"""Finance's risk dashboards in the admin (§1, §9): exposure over time, receivables aging, the
allowance's history, margins by model and by tier, and providers' days of cover.

Each page is a chart and the table of the same figures. Charts are inline SVG drawn here on the
server: the admin must work without any network or CDN, and an SVG of a few dozen rectangles needs
no JavaScript. Pixel positions are computed in Decimal, like everything else near money.

The figures come from the risk selectors (settlement.risk_selectors), the margin selector
(settlement.selectors.margins), procurement's cover selector, and the ledger. Pages are read-only,
for staff holding DASHBOARD_PERMISSION, and mounted at /admin/finance/ (see `urlpatterns`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from distributor.errors import NotFound, ValidationFailed
from ledger.models import Book
from settlement.risk_selectors import (
    EXPOSURE_FIELDS,
    aging,
    allowance_balance,
    dso,
    exposure,
    exposure_history,
)

# Who may see the dashboards: finance staff who may already read invoices (receivables are the
# bulk of what the pages show). Staff without it get a 403, non-staff the admin login.
DASHBOARD_PERMISSION = "settlement.view_invoice"
EXPOSURE_POINTS_MAX = 60
EXPOSURE_DAYS_DEFAULT = 30
ALLOWANCE_MONTHS_DEFAULT = 6
PALETTE = {
    "upstream_prepaid": "#4e79a7",
    "unbilled": "#f28e2b",
    "receivables": "#59a14f",
    "customer_deposits": "#b07aa1",
    "upstream_payables": "#e15759",
    "gross": "#333333",
    "net": "#111111",
    "revenue": "#4e79a7",
    "cost": "#e15759",
    "margin": "#59a14f",
    "allowance": "#76b7b2",
    "remaining_list": "#4e79a7",
    "remaining_cost": "#f28e2b",
    "days_of_cover": "#59a14f",
    "threshold": "#e15759",
}


# --- figures -------------------------------------------------------------------------------------


def figure(amount: Decimal | None) -> str:
    """An amount for a person: at least the minor unit's two places, more only where the exact
    figure has them (9419.0625 stays exact, 652 reads 652.00). No float, no rounding."""
    if amount is None:
        return "-"
    exact = amount.normalize()
    exponent = exact.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -2:
        return f"{amount:.2f}"
    return format(exact, "f")


# --- charts --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Series:
    key: str
    name: str
    values: Sequence[Decimal]
    color: str = ""
    dashed: bool = False


@dataclass
class Chart:
    """A bar chart (stacked or grouped, negative values below the axis) with optional lines."""

    title: str
    categories: Sequence[str]
    bars: Sequence[Series]
    lines: Sequence[Series] = field(default_factory=list)
    stacked: bool = False
    unit: str = ""
    width: int = 780
    height: int = 320

    def svg(self) -> SafeString:
        return mark_safe(_svg(self))  # noqa: S308 (every text in it is escaped in _svg)


_LEFT, _RIGHT, _TOP, _BOTTOM = 90, 20, 30, 64
_PX = Decimal("0.1")


def _px(value: Decimal) -> str:
    return str(value.quantize(_PX))


def _nice_range(low: Decimal, high: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """Widen [low, high] to round tick steps (1, 2, 2.5 or 5 x 10^k, about five ticks)."""
    rough = (high - low) / 5
    magnitude = Decimal(10) ** rough.adjusted()
    step = next(
        m * magnitude
        for m in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10))
        if m * magnitude >= rough
    )
    return (
        (low / step).to_integral_value(rounding=ROUND_FLOOR) * step,
        (high / step).to_integral_value(rounding=ROUND_CEILING) * step,
        step,
    )


def _ticks(low: Decimal, high: Decimal, step: Decimal) -> list[Decimal]:
    count = int((high - low) / step)
    return [low + step * i for i in range(count + 1)]


def _svg(chart: Chart) -> str:
    n = max(len(chart.categories), 1)
    plot_w = Decimal(chart.width - _LEFT - _RIGHT)
    plot_h = Decimal(chart.height - _TOP - _BOTTOM)
    # The value range: stacks add up per side of the axis; lines count too.
    lows, highs = [Decimal(0)], [Decimal(0)]
    for i in range(len(chart.categories)):
        column = [s.values[i] for s in chart.bars]
        if chart.stacked:
            highs.append(sum((v for v in column if v > 0), Decimal(0)))
            lows.append(sum((v for v in column if v < 0), Decimal(0)))
        else:
            highs += column
            lows += column
        for line in chart.lines:
            highs.append(line.values[i])
            lows.append(line.values[i])
    low, high = min(lows), max(highs)
    if high == low:
        high = low + 1
    low, high, step = _nice_range(low, high)

    def y(value: Decimal) -> Decimal:
        return Decimal(_TOP) + (high - value) / (high - low) * plot_h

    slot = plot_w / n
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="finance-chart" role="img" '
        f'width="{chart.width}" height="{chart.height}" viewBox="0 0 {chart.width} {chart.height}" '
        f'font-family="sans-serif" font-size="11">',
        f"<title>{escape(chart.title)}</title>",
        f'<text x="{_LEFT}" y="16" font-size="13" font-weight="bold">{escape(chart.title)}</text>',
    ]
    # Legend under the x labels, wrapped into rows (swatches are not bars: tests count `rect.bar`).
    x_legend, row = _LEFT, 0
    legend_y = chart.height - _BOTTOM + 36
    for s in [*chart.bars, *chart.lines]:
        color = s.color or PALETTE.get(s.key, "#888")
        item_width = 30 + 7 * len(s.name)
        if x_legend + item_width > chart.width - _RIGHT and x_legend > _LEFT:
            x_legend, row = _LEFT, row + 1
        y_item = legend_y + 16 * row
        out.append(
            f'<rect class="legend-swatch" x="{x_legend}" y="{y_item - 9}" width="10" height="10" fill="{color}"/>'
            f'<text class="legend" x="{x_legend + 14}" y="{y_item}">{escape(s.name)}</text>'
        )
        x_legend += item_width
    extra = 16 * row
    # Axes and grid.
    for tick in _ticks(low, high, step):
        ty = _px(y(tick))
        out.append(
            f'<line x1="{_LEFT}" x2="{chart.width - _RIGHT}" y1="{ty}" y2="{ty}" stroke="#e5e5e5"/>'
            f'<text class="y-label" x="{_LEFT - 6}" y="{ty}" text-anchor="end" dominant-baseline="middle">'
            f"{escape(_axis_label(tick))}</text>"
        )
    zero = _px(y(Decimal(0)))
    out.append(
        f'<line class="axis" x1="{_LEFT}" x2="{chart.width - _RIGHT}" y1="{zero}" y2="{zero}" stroke="#333"/>'
    )
    out.append(
        f'<line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{_TOP + plot_h}" stroke="#333"/>'
    )
    if chart.unit:
        out.append(
            f'<text class="unit" x="12" y="{_px(Decimal(_TOP) + plot_h / 2)}" '
            f'transform="rotate(-90 12 {_px(Decimal(_TOP) + plot_h / 2)})" text-anchor="middle">'
            f"{escape(chart.unit)}</text>"
        )
    # Bars.
    every = max(1, (n + 11) // 12)
    for i, category in enumerate(chart.categories):
        x0 = Decimal(_LEFT) + slot * i
        if chart.stacked:
            width = slot * Decimal("0.6")
            up, down = Decimal(0), Decimal(0)
            for s in chart.bars:
                value = s.values[i]
                base = up if value >= 0 else down
                top_value = base + value
                y_a, y_b = y(max(base, top_value)), y(min(base, top_value))
                out.append(_bar(s, category, value, x0 + slot * Decimal("0.2"), y_a, width, y_b - y_a))
                if value >= 0:
                    up = top_value
                else:
                    down = top_value
        else:
            width = slot * Decimal("0.8") / max(len(chart.bars), 1)
            for j, s in enumerate(chart.bars):
                value = s.values[i]
                y_a, y_b = y(max(value, Decimal(0))), y(min(value, Decimal(0)))
                out.append(
                    _bar(s, category, value, x0 + slot * Decimal("0.1") + width * j, y_a, width, y_b - y_a)
                )
        if i % every == 0 or i == n - 1:
            out.append(
                f'<text class="x-label" x="{_px(x0 + slot / 2)}" y="{chart.height - _BOTTOM + 16}" '
                f'text-anchor="middle">{escape(category)}</text>'
            )
    # Lines, over the bars.
    for s in chart.lines:
        color = s.color or PALETTE.get(s.key, "#111")
        points = [(Decimal(_LEFT) + slot * i + slot / 2, y(value)) for i, value in enumerate(s.values)]
        dash = ' stroke-dasharray="5,4"' if s.dashed else ""
        out.append(
            f'<polyline class="line" data-series="{escape(s.key)}" fill="none" stroke="{color}" '
            f'stroke-width="2"{dash} points="{" ".join(f"{_px(px)},{_px(py)}" for px, py in points)}"/>'
        )
        for (px, py), value, category in zip(points, s.values, chart.categories, strict=True):
            out.append(
                f'<circle class="point" data-series="{escape(s.key)}" data-value="{figure(value)}" '
                f'cx="{_px(px)}" cy="{_px(py)}" r="3" fill="{color}">'
                f"<title>{escape(category)} · {escape(s.name)}: {figure(value)}</title></circle>"
            )
    out.append("</svg>")
    if extra:
        # Taller by the legend's extra rows (the plot keeps its size).
        out[0] = (
            out[0]
            .replace(f'height="{chart.height}"', f'height="{chart.height + extra}"', 1)
            .replace(
                f'viewBox="0 0 {chart.width} {chart.height}"',
                f'viewBox="0 0 {chart.width} {chart.height + extra}"',
                1,
            )
        )
    return "".join(out)


def _bar(s: Series, category: str, value: Decimal, x: Decimal, y: Decimal, w: Decimal, h: Decimal) -> str:
    color = s.color or PALETTE.get(s.key, "#888")
    return (
        f'<rect class="bar" data-series="{escape(s.key)}" data-category="{escape(category)}" '
        f'data-value="{figure(value)}" x="{_px(x)}" y="{_px(y)}" width="{_px(w)}" height="{_px(h)}" '
        f'fill="{color}"><title>{escape(category)} · {escape(s.name)}: {figure(value)}</title></rect>'
    )


def _axis_label(value: Decimal) -> str:
    return format(value.normalize(), "f") if value != 0 else "0"


def books() -> list[Book]:
    return list(Book.objects.order_by("pk"))


def book_tier(book: Book) -> int:
    """0 for the root book; a distributor's own book is one deeper than the distributor."""
    from accounts.models import Account

    owner = Account.objects.filter(own_book=book).only("depth").first()
    return 0 if owner is None else owner.depth + 1


def books_below(book: Book) -> list[Book]:
    """The book and the own books of every distributor it bills, directly or further down."""
    from accounts.models import Account

    owner = Account.objects.filter(own_book=book).only("pk").first()
    if owner is None:
        roots = Account.objects.filter(book=book, parent__isnull=True).values_list("pk", flat=True)
        below = Account.objects.filter(pk__in=roots) | Account.objects.filter(
            ancestor_ids__overlap=list(roots)
        )
    else:
        below = Account.objects.filter(ancestor_ids__contains=[owner.pk])
    ids = set(below.exclude(own_book__isnull=True).values_list("own_book_id", flat=True))
    return [book, *Book.objects.filter(pk__in=ids).order_by("pk")]


@dataclass(frozen=True, slots=True)
class ExposurePoint:
    at: datetime
    upstream_prepaid: Decimal
    unbilled: Decimal
    receivables: Decimal
    gross: Decimal
    customer_deposits: Decimal
    upstream_payables: Decimal
    net: Decimal


def _exposure_point(at: datetime, figures: Any) -> ExposurePoint:
    """A point of the trend from an `Exposure` or an `ExposureSnapshot` (same field names)."""
    return ExposurePoint(at, *(Decimal(getattr(figures, name)) for name in EXPOSURE_FIELDS))


def exposure_over_time(*, book: Book, currency: str, until: datetime, days: int) -> list[ExposurePoint]:
    """Exposure at points from `until - days` to `until`: the daily snapshots where they exist
    (`exposure_history`, oldest first), else computed live at each point (one per day, at most
    EXPOSURE_POINTS_MAX points, the last one exactly at `until`)."""
    since = until - timedelta(days=days)
    points = [
        _exposure_point(row.as_of, row)
        for row in exposure_history(book=book, currency=currency, since=since, until=until)
    ]
    if points:
        if points[-1].at < until:
            # The trend ends at the asked time, not at the last snapshot.
            points.append(_exposure_point(until, exposure(book=book, currency=currency, as_of=until)))
        return points[-EXPOSURE_POINTS_MAX:]
    step = max(1, -(-days // EXPOSURE_POINTS_MAX))
    moments = [until - timedelta(days=k) for k in range(0, days + 1, step)]
    return [_exposure_point(at, exposure(book=book, currency=currency, as_of=at)) for at in reversed(moments)]


def allowance_history(
    *, book: Book, currency: str, until: datetime, months: int
) -> list[tuple[str, Decimal]]:
    """The allowance account's ledger balance at the end of each of the last `months` calendar
    months in the book's zone (the current month's point is at `until`)."""
    from ledger.selectors import account_balance

    zone = ZoneInfo(book.timezone)
    local = until.astimezone(zone)
    month_starts: list[date] = []
    first = date(local.year, local.month, 1)
    for _ in range(months):
        month_starts.append(first)
        first = (first - timedelta(days=1)).replace(day=1)
    points = []
    for start in reversed(month_starts):
        following = (start + timedelta(days=32)).replace(day=1)
        end = datetime(following.year, following.month, 1, tzinfo=zone) - timedelta(microseconds=1)
        at = min(end, until)
        points.append(
            (
                f"{start:%Y-%m}",
                account_balance(book=book, account_code="allowance", currency=currency, as_of=at),
            )
        )
    return points


@dataclass(frozen=True, slots=True)
class MarginTotals:
    label: str
    book: str
    revenue: Decimal
    cost: Decimal

    @property
    def margin(self) -> Decimal:
        return self.revenue - self.cost


def margins(*, book: Book, period_start: date, period_end: date) -> list[Any]:
    """Revenue, cost and margin per model for [period_start, period_end) (settlement.selectors)."""
    from settlement.selectors import margins as margin_rows

    return margin_rows(book=book, day_from=period_start, day_to=period_end)


def margins_by_model(
    *, book: Book, currency: str, period_start: date, period_end: date
) -> list[MarginTotals]:
    totals: dict[str, list[Decimal]] = {}
    for row in margins(book=book, period_start=period_start, period_end=period_end):
        if row.currency != currency:
            continue
        pair = totals.setdefault(row.model, [Decimal(0), Decimal(0)])
        pair[0] += row.revenue
        pair[1] += row.cost
    return [MarginTotals(model, book.code, r, c) for model, (r, c) in totals.items()]


def margins_by_tier(*, book: Book, currency: str, period_start: date, period_end: date) -> list[MarginTotals]:
    """Each hop of the cascade below this book is a tier: the book itself, then the own books of
    the distributors it bills (tier 1), and so on (§4: each hop's margin)."""
    rows = []
    for hop in books_below(book):
        models = margins_by_model(
            book=hop, currency=currency, period_start=period_start, period_end=period_end
        )
        rows.append(
            MarginTotals(
                f"tier {book_tier(hop)}",
                hop.code,
                sum((m.revenue for m in models), Decimal(0)),
                sum((m.cost for m in models), Decimal(0)),
            )
        )
    return sorted(rows, key=lambda m: (m.label, m.book))


# --- views ---------------------------------------------------------------------------------------


@dataclass
class Scope:
    book: Book
    currency: str
    as_of: datetime
    as_of_text: str
    query: str


def _scope(request: HttpRequest) -> Scope:
    code = request.GET.get("book")
    book = Book.objects.filter(code=code).first() if code else None
    if code and book is None:
        raise NotFound(f"no book {code!r}", details={"book": code})
    if book is None:
        book = Book.objects.filter(owner_account__isnull=True).order_by("pk").first() or Book.objects.first()
    if book is None:
        raise NotFound("no book yet: create one first")
    currency = (request.GET.get("currency") or book.currency).upper()
    text = request.GET.get("as_of", "").strip()
    if text:
        try:
            as_of = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationFailed("as_of is an ISO 8601 time with zone", details={"as_of": text}) from None
        if as_of.tzinfo is None:
            raise ValidationFailed("as_of must carry a time zone", details={"as_of": text})
    else:
        as_of = timezone.now()
    query = f"book={book.code}&currency={currency}" + (f"&as_of={text}" if text else "")
    return Scope(book=book, currency=currency, as_of=as_of, as_of_text=text, query=query)


def _int(request: HttpRequest, name: str, default: int, low: int, high: int) -> int:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{name} is a whole number", details={name: raw}) from None
    if not low <= value <= high:
        raise ValidationFailed(f"{name} is between {low} and {high}", details={name: raw})
    return value


PAGES = (
    ("exposure", "Exposure over time"),
    ("aging", "Receivables aging"),
    ("allowance", "Allowance history"),
    ("margins", "Margins by model and tier"),
    ("cover", "Providers' days of cover"),
)


def _page(request: HttpRequest, template: str, scope: Scope, title: str, **context: Any) -> HttpResponse:
    nav = [(name, label, reverse(f"finance-{name}") + f"?{scope.query}") for name, label in PAGES]
    return render(
        request,
        template,
        {
            **admin.site.each_context(request),
            "title": title,
            "scope": scope,
            "books": books(),
            "nav": nav,
            **context,
        },
    )


def _guarded(view: Callable[[HttpRequest, Scope], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    def wrapped(request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm(DASHBOARD_PERMISSION):
            raise PermissionDenied("the finance dashboards need the permission to view invoices")
        try:
            scope = _scope(request)
        except (NotFound, ValidationFailed) as exc:
            return render(
                request,
                "admin/finance/error.html",
                {**admin.site.each_context(request), "title": "Finance dashboards", "message": exc.message},
                status=404 if isinstance(exc, NotFound) else 400,
            )
        try:
            return view(request, scope)
        except ValidationFailed as exc:
            return render(
                request,
                "admin/finance/error.html",
                {**admin.site.each_context(request), "title": "Finance dashboards", "message": exc.message},
                status=400,
            )

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return admin.site.admin_view(wrapped)


def index_view(request: HttpRequest, scope: Scope) -> HttpResponse:
    return _page(request, "admin/finance/index.html", scope, "Finance dashboards")


def exposure_view(request: HttpRequest, scope: Scope) -> HttpResponse:
    days = _int(request, "days", EXPOSURE_DAYS_DEFAULT, 1, 366)
    points = exposure_over_time(book=scope.book, currency=scope.currency, until=scope.as_of, days=days)
    zone = ZoneInfo(scope.book.timezone)
    categories = [f"{p.at.astimezone(zone):%m-%d}" for p in points]
    chart = Chart(
        title=f"Exposure, {scope.book.code}, {scope.currency}",
        categories=categories,
        stacked=True,
        unit=scope.currency,
        bars=[
            Series("upstream_prepaid", "Upstream prepaid", [p.upstream_prepaid for p in points]),
            Series("unbilled", "Unbilled", [p.unbilled for p in points]),
            Series("receivables", "Receivables", [p.receivables for p in points]),
            Series("customer_deposits", "Customer deposits (held)", [-p.customer_deposits for p in points]),
            Series("upstream_payables", "Upstream payables (owed)", [-p.upstream_payables for p in points]),
        ],
        lines=[
            Series("gross", "Gross", [p.gross for p in points], dashed=True),
            Series("net", "Net", [p.net for p in points]),
        ],
    )
    latest = points[-1] if points else None
    dso_value = dso(book=scope.book, currency=scope.currency, as_of=scope.as_of)
    return _page(
        request,
        "admin/finance/exposure.html",
        scope,
        "Exposure over time",
        chart=chart.svg() if points else None,
        points=[
            {"at": p.at.astimezone(zone), **{name: figure(getattr(p, name)) for name in EXPOSURE_FIELDS}}
            for p in points
        ],
        latest={name: figure(getattr(latest, name)) for name in EXPOSURE_FIELDS} if latest else None,
        days=days,
        dso=dso_value,
    )


def aging_view(request: HttpRequest, scope: Scope) -> HttpResponse:
    figures = aging(book=scope.book, currency=scope.currency, as_of=scope.as_of)
    buckets = list(figures.buckets.items())
    chart = Chart(
        title=f"Open receivables by days past due, {scope.book.code}, {scope.currency}",
        categories=[label for label, _ in buckets],
        bars=[Series("receivables", "Open receivables", [Decimal(v) for _, v in buckets])],
        unit=scope.currency,
    )
    per_account = []
    for code, row in sorted((getattr(figures, "per_account", None) or {}).items()):
        values = dict(row) if not isinstance(row, dict) else row
        per_account.append(
            {"account": code, "cells": [figure(Decimal(values.get(label, 0))) for label, _ in buckets]}
        )
    return _page(
        request,
        "admin/finance/aging.html",
        scope,
        "Receivables aging",
        chart=chart.svg(),
        buckets=[(label, figure(Decimal(v))) for label, v in buckets],
        total=figure(sum((Decimal(v) for _, v in buckets), Decimal(0))),
        per_account=per_account,
        invoices=[
            {
                "number": i.number,
                "account": i.account,
                "due_date": i.due_date,
                "days": i.days_past_due,
                "bucket": i.bucket,
                "open": figure(i.open),
            }
            for i in getattr(figures, "invoices", None) or []
        ],
    )


def allowance_view(request: HttpRequest, scope: Scope) -> HttpResponse:
    months = _int(request, "months", ALLOWANCE_MONTHS_DEFAULT, 1, 36)
    points = allowance_history(book=scope.book, currency=scope.currency, until=scope.as_of, months=months)
    current = allowance_balance(book=scope.book, currency=scope.currency, as_of=scope.as_of)
    chart = Chart(
        title=f"Allowance for doubtful accounts, {scope.book.code}, {scope.currency}",
        categories=[label for label, _ in points],
        bars=[Series("allowance", "Allowance (month end)", [v for _, v in points])],
        unit=scope.currency,
    )
    return _page(
        request,
        "admin/finance/allowance.html",
        scope,
        "Allowance history",
        chart=chart.svg(),
        points=[(label, figure(v)) for label, v in points],
        current=figure(Decimal(current)),
        months=months,
    )


def _period(request: HttpRequest, scope: Scope) -> tuple[str, date, date]:
    """The month to show (?period=2026-10); by default the last month ended before `as_of`."""
    text = request.GET.get("period", "").strip()
    if text:
        try:
            start = datetime.strptime(text, "%Y-%m").date()
        except ValueError:
            raise ValidationFailed("period is a month, e.g. 2026-10", details={"period": text}) from None
    else:
        local = scope.as_of.astimezone(ZoneInfo(scope.book.timezone)).date()
        start = (local.replace(day=1) - timedelta(days=1)).replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return f"{start:%Y-%m}", start, end


def margins_view(request: HttpRequest, scope: Scope) -> HttpResponse:
    label, start, end = _period(request, scope)
    by_model = margins_by_model(book=scope.book, currency=scope.currency, period_start=start, period_end=end)
    by_tier = margins_by_tier(book=scope.book, currency=scope.currency, period_start=start, period_end=end)

    def chart_of(rows: list[MarginTotals], title: str, names: list[str]) -> SafeString:
        return Chart(
            title=title,
            categories=names,
            bars=[
                Series("revenue", "Revenue", [m.revenue for m in rows]),
                Series("cost", "Cost", [m.cost for m in rows]),
                Series("margin", "Margin", [m.margin for m in rows]),
            ],
            unit=scope.currency,
        ).svg()

    def table(rows: list[MarginTotals]) -> list[dict[str, Any]]:
        return [
            {
                "label": m.label,
                "book": m.book,
                "revenue": figure(m.revenue),
                "cost": figure(m.cost),
                "margin": figure(m.margin),
                "negative": m.margin < 0,
            }
            for m in rows
        ]

    return _page(
        request,
        "admin/finance/margins.html",
        scope,
        "Margins by model and tier",
        period=label,
        model_chart=chart_of(
            by_model, f"Margin by model, {scope.book.code}, {label}", [m.label for m in by_model]
        )
        if by_model
        else None,
        tier_chart=chart_of(by_tier, f"Margin by tier, {label}", [f"{m.label} ({m.book})" for m in by_tier]),
        by_model=table(by_model),
        by_tier=table(by_tier),
    )


def cover_view(request: HttpRequest, scope: Scope) -> HttpResponse:
    from procurement.selectors import providers_cover

    covers = [c for c in providers_cover(book=scope.book, now=scope.as_of) if c.currency == scope.currency]
    names = [c.provider_code for c in covers]
    credit_chart = Chart(
        title=f"Prepaid credit remaining, {scope.book.code}, {scope.currency}",
        categories=names,
        bars=[
            Series("remaining_list", "At list price", [c.remaining_list for c in covers]),
            Series("remaining_cost", "At cost", [c.remaining_cost for c in covers]),
        ],
        unit=scope.currency,
    )
    days_chart = Chart(
        title="Days of cover at the trailing 7-day burn",
        categories=names,
        bars=[Series("days_of_cover", "Days of cover", [c.days_of_cover or Decimal(0) for c in covers])],
        lines=[
            Series("threshold", "Alert threshold", [Decimal(c.threshold_days) for c in covers], dashed=True)
        ],
        unit="days",
    )
    return _page(
        request,
        "admin/finance/cover.html",
        scope,
        "Providers' days of cover",
        credit_chart=credit_chart.svg() if covers else None,
        days_chart=days_chart.svg() if covers else None,
        covers=[
            {
                "provider": c.provider_code,
                "remaining_list": figure(c.remaining_list),
                "remaining_cost": figure(c.remaining_cost),
                "burn_7d": figure(c.burn_7d_list),
                "days": "no usage in 7 days" if c.days_of_cover is None else figure(c.days_of_cover),
                "threshold": c.threshold_days,
                "low": c.low_cover,
            }
            for c in covers
        ],
    )


urlpatterns: list[URLPattern] = [
    path("", _guarded(index_view), name="finance-index"),
    path("exposure/", _guarded(exposure_view), name="finance-exposure"),
    path("aging/", _guarded(aging_view), name="finance-aging"),
    path("allowance/", _guarded(allowance_view), name="finance-allowance"),
    path("margins/", _guarded(margins_view), name="finance-margins"),
    path("cover/", _guarded(cover_view), name="finance-cover"),
]
