from django.urls import URLPattern, URLResolver, include, path

from settlement.api.views import AuthorizationView, UsageBatchView

urlpatterns: list[URLPattern | URLResolver] = [
    path("usage/batches", UsageBatchView.as_view(), name="usage-batches"),
    path("accounts/<str:code>/authorization", AuthorizationView.as_view(), name="account-authorization"),
    path("", include("settlement.api.billing_urls")),
]
