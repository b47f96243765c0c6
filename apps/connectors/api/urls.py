from django.urls import re_path

from apps.connectors.api import views
from quantumfleet.api.routers import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("connectors", views.ConnectorViewSet, basename="connector")
router.register(
    r"connectors/(?P<connector_id>\d+)/calls", views.ConnectorCallViewSet, basename="connector-call"
)
router.register(
    r"connectors/(?P<connector_id>\d+)/logs", views.ConnectorLogViewSet, basename="connector-log"
)
router.register("rules", views.RuleViewSet, basename="rule")

urlpatterns = [
    re_path(r"^hooks/(?P<token>[\w-]{16,128})/?$", views.HookView.as_view(), name="webhook"),
    *router.urls,
]
