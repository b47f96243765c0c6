from apps.dashboards.api import views
from quantumfleet.api.routers import OptionalSlashRouter

TENANT = r"tenants/(?P<tenant_id>\d+)"

router = OptionalSlashRouter()
router.register(f"{TENANT}/dashboards", views.DashboardViewSet, basename="dashboard")
router.register(
    rf"{TENANT}/dashboards/(?P<dashboard_id>\d+)/panels", views.PanelViewSet, basename="panel"
)
router.register(f"{TENANT}/saved-queries", views.SavedQueryViewSet, basename="saved-query")

urlpatterns = router.urls
