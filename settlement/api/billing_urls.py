from django.urls import URLPattern, URLResolver, path

from settlement.api.billing_views import InvoiceCsvView, InvoiceDetailView, InvoiceListView, InvoicePdfView

urlpatterns: list[URLPattern | URLResolver] = [
    path("invoices", InvoiceListView.as_view(), name="invoices"),
    path("invoices.csv", InvoiceCsvView.as_view(), name="invoices-csv"),
    path("invoices/<str:number>", InvoiceDetailView.as_view(), name="invoice-detail"),
    path("invoices/<str:number>/pdf", InvoicePdfView.as_view(), name="invoice-pdf"),
]
