from apps.devices.api import views
from quantumfleet.api.routers import OptionalSlashRouter

router = OptionalSlashRouter()
router.register("devices", views.DeviceViewSet, basename="device")
router.register(
    r"devices/(?P<device_id>\d+)/commands", views.DeviceCommandViewSet, basename="device-command"
)

urlpatterns = router.urls
