from django.urls import URLPattern, URLResolver, include, path

from settlement.api.reseller_views import (
    AccountChargeView,
    AccountCreditNoteCsvView,
    AccountCreditNoteListView,
    AccountInvoiceCsvView,
    AccountInvoiceListView,
    AccountStatementListView,
    AccountStatementPdfView,
    CreditNoteDetailView,
    CreditNotePdfView,
    PaymentsMadeView,
    PaymentsReceivedView,
    UsageSummaryView,
)
from settlement.api.views import AuthorizationView, UsageBatchView

urlpatterns: list[URLPattern | URLResolver] = [
    path("usage/batches", UsageBatchView.as_view(), name="usage-batches"),
    path("accounts/<str:code>/authorization", AuthorizationView.as_view(), name="account-authorization"),
    path("accounts/<str:code>/usage", UsageSummaryView.as_view(), name="account-usage"),
    path("accounts/<str:code>/invoices", AccountInvoiceListView.as_view(), name="account-invoices"),
    path("accounts/<str:code>/invoices.csv", AccountInvoiceCsvView.as_view(), name="account-invoices-csv"),
    path(
        "accounts/<str:code>/credit-notes", AccountCreditNoteListView.as_view(), name="account-credit-notes"
    ),
    path(
        "accounts/<str:code>/credit-notes.csv",
        AccountCreditNoteCsvView.as_view(),
        name="account-credit-notes-csv",
    ),
    path("accounts/<str:code>/statements", AccountStatementListView.as_view(), name="account-statements"),
    path(
        "accounts/<str:code>/statements/<str:period>/pdf",
        AccountStatementPdfView.as_view(),
        name="account-statement-pdf",
    ),
    path("accounts/<str:code>/payments", PaymentsMadeView.as_view(), name="account-payments"),
    path("accounts/<str:code>/charges", AccountChargeView.as_view(), name="account-charges"),
    path(
        "accounts/<str:code>/payments-received",
        PaymentsReceivedView.as_view(),
        name="account-payments-received",
    ),
    path("credit-notes/<str:number>", CreditNoteDetailView.as_view(), name="credit-note-detail"),
    path("credit-notes/<str:number>/pdf", CreditNotePdfView.as_view(), name="credit-note-pdf"),
    path("", include("settlement.api.billing_urls")),
]
