from typing import Any

from django.apps import AppConfig
from django.db.models.signals import pre_delete


def delete_points_with_device(sender: type, instance: Any, **kwargs: Any) -> None:
    from apps.telemetry.services import delete_device_telemetry

    delete_device_telemetry(instance)


class TelemetryConfig(AppConfig):
    name = "apps.telemetry"
    label = "telemetry"
    verbose_name = "Telemetry"

    def ready(self) -> None:
        from apps.devices.models import Device

        # Telemetry depends on devices, not the other way round: it cleans up after them.
        pre_delete.connect(
            delete_points_with_device, sender=Device, dispatch_uid="telemetry-device-delete"
        )
