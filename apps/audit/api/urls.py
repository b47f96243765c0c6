from apps.audit.api import views
from quantumfleet.api.routers import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("audit/events", views.AuditEventViewSet, basename="audit-event")
router.register("audit/device-sessions", views.DeviceSessionViewSet, basename="device-session")
router.register("audit/user-sessions", views.UserSessionViewSet, basename="user-session")

urlpatterns = router.urls
