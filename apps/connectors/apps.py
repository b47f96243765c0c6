from django.apps import AppConfig


class ConnectorsConfig(AppConfig):
    name = "apps.connectors"
    label = "connectors"
    verbose_name = "Connectors"

    def ready(self) -> None:
        from apps.connectors.rules import queue_rule_evaluation
        from apps.telemetry.services import points_stored

        # Telemetry knows nothing of rules: it announces committed batches, rules listen.
        points_stored.connect(queue_rule_evaluation, dispatch_uid="connectors-rules")
