from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from distributor.views import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # Finance dashboards (settlement/dashboards.py): admin pages, mounted before the admin catch-all.
    path("admin/finance/", include("settlement.dashboards")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/v1/", include("accounts.api.urls")),
    path("api/v1/", include("settlement.api.urls")),
    path("api/v1/", include("procurement.api.urls")),
    path("api/v1/", include("ledger.api.urls")),
]
