from django.urls import URLPattern, URLResolver, path

# Imported for its side effect: registers the bearer scheme with drf-spectacular.
import accounts.api.schema  # noqa: F401
from accounts.api.key_views import ApiKeyListCreateView, ApiKeyRevokeView
from accounts.api.views import (
    AccountBalanceView,
    AccountCloseView,
    AccountDetailView,
    AccountListCreateView,
    PriceListView,
)
from accounts.api.webhook_views import (
    WebhookDeliveryListView,
    WebhookDetailView,
    WebhookListCreateView,
)

urlpatterns: list[URLPattern | URLResolver] = [
    path("accounts", AccountListCreateView.as_view(), name="accounts"),
    path("accounts/<str:code>", AccountDetailView.as_view(), name="account-detail"),
    path("accounts/<str:code>/close", AccountCloseView.as_view(), name="account-close"),
    path("accounts/<str:code>/balance", AccountBalanceView.as_view(), name="account-balance"),
    path("accounts/<str:code>/price-lists", PriceListView.as_view(), name="account-price-lists"),
    path("accounts/<str:code>/api-keys", ApiKeyListCreateView.as_view(), name="account-api-keys"),
    path(
        "accounts/<str:code>/api-keys/<int:key_id>/revoke",
        ApiKeyRevokeView.as_view(),
        name="account-api-key-revoke",
    ),
    path("webhooks", WebhookListCreateView.as_view(), name="webhooks"),
    path("webhooks/<int:webhook_id>", WebhookDetailView.as_view(), name="webhook-detail"),
    path(
        "webhooks/<int:webhook_id>/deliveries", WebhookDeliveryListView.as_view(), name="webhook-deliveries"
    ),
]
