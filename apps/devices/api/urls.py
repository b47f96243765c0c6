from apps.devices.api import views
from quantumfleet.api.routers import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("devices", views.DeviceViewSet, basename="device")

urlpatterns = router.urls
