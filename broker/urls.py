from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from broker.api.views import HealthView

admin.site.site_header = "Broker back office"
admin.site.site_title = "Broker back office"
admin.site.index_title = "Back-office records"
admin.site.enable_nav_sidebar = False  # the record lists need the width

handler404 = "broker.api.views.not_found"
handler500 = "broker.api.views.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/health", HealthView.as_view(), name="health"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("orders.api.urls")),
    path("api/", include("broker.api.urls")),
    path("api/", include("reporting.api.urls")),
    # Staff screens
    path("", RedirectView.as_view(pattern_name="orders:blotter"), name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("orders.urls")),
    path("", include("reporting.urls")),
]
