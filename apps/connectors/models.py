"""Connectors: outbound HTTP calls, inbound webhooks, collector sources, their logs and rules."""

from __future__ import annotations

from django.db import models

from apps.devices.models import Device
from apps.tenants.models import TenantOwnedModel


class ConnectorKind(models.TextChoices):
    """What a connector does; its ``config`` is validated against its kind."""

    OUTBOUND_HTTP = "outbound_http", "Outbound HTTP"
    WEBHOOK = "webhook", "Inbound webhook"
    COLLECTOR = "collector", "Collector source"


class Connector(TenantOwnedModel):
    """An integration of one tenant with another system.

    ``config`` never holds a secret: the one secret of a connector (a bearer token, a
    basic-auth password, or the HMAC key that signs or verifies bodies) is in ``secret``,
    which the API never returns and the admin masks. A webhook's token is stored as a
    SHA-256 digest and shown once, like a device's ingest token.
    """

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=ConnectorKind.choices)
    is_active = models.BooleanField(default=True)
    config = models.JSONField(default=dict, blank=True)
    # TODO: stored as plain text, like every credential Django keeps for its own use; a
    # database dump or backup therefore exposes the tenants' integration secrets. Encrypting
    # them needs a key-management setting that does not exist yet.
    secret = models.CharField(max_length=512, blank=True)
    webhook_token_hash = models.CharField(
        max_length=64, unique=True, null=True, blank=True, editable=False
    )
    webhook_token_prefix = models.CharField(max_length=12, blank=True, editable=False)
    next_poll_at = models.DateTimeField(
        null=True, blank=True, help_text="Collector sources: when beat polls it next."
    )
    last_polled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "connectors"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="connectors_name_per_tenant"),
            models.CheckConstraint(
                condition=models.Q(kind__in=ConnectorKind.values), name="connectors_kind_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "kind"], name="connectors_tenant_kind"),
            # Beat looks for due collector sources every tick; they are few.
            models.Index(
                fields=["next_poll_at"],
                name="connectors_due_polls",
                condition=models.Q(kind="collector", is_active=True),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def masked_secret(self) -> str:
        return "••••••" if self.secret else ""


class CallStatus(models.TextChoices):
    """Where an outbound call stands."""

    QUEUED = "queued", "Queued"
    RETRYING = "retrying", "Failed, will retry"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed, not retried"
    DEAD = "dead", "Gave up after every retry"


class ConnectorCall(TenantOwnedModel):
    """One outbound call of a connector, made in one or more attempts.

    ``context`` is what its body template can use: the triggering device and point, the
    rule, or the payload given to ``POST /connectors/{id}/call``.
    """

    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="calls")
    rule = models.ForeignKey(
        "Rule", on_delete=models.SET_NULL, null=True, blank=True, related_name="calls"
    )
    status = models.CharField(max_length=16, choices=CallStatus.choices, default=CallStatus.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    context = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "connector_calls"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "connector", "created_at"], name="connector_calls_list"),
        ]

    def __str__(self) -> str:
        return f"call {self.pk} of {self.connector_id} ({self.status})"


class Direction(models.TextChoices):
    OUTBOUND = "outbound", "Outbound call"
    INBOUND = "inbound", "Inbound webhook"
    POLL = "poll", "Collector poll"


class LogStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SUCCEEDED = "succeeded", "Succeeded"
    RETRYING = "retrying", "Failed, will retry"
    FAILED = "failed", "Failed"
    DEAD = "dead", "Failed, no retry left"
    REJECTED = "rejected", "Rejected"


class ConnectorLog(TenantOwnedModel):
    """One attempt of a call, one webhook received, or one collector poll.

    Excerpts are cut to CONNECTOR_LOG_EXCERPT_CHARS and never hold a secret: auth
    headers and signatures are masked before they are written.
    """

    # TODO: no retention yet: rows stay until their connector is deleted, so a busy webhook
    # adds a row per call for ever; a periodic task that deletes rows older than a setting
    # is the intended fix.

    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="logs")
    call = models.ForeignKey(
        ConnectorCall, on_delete=models.CASCADE, null=True, blank=True, related_name="logs"
    )
    direction = models.CharField(max_length=16, choices=Direction.choices)
    status = models.CharField(max_length=16, choices=LogStatus.choices)
    attempt = models.PositiveIntegerField(default=0)
    http_status = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    request_excerpt = models.TextField(blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)
    stored = models.PositiveIntegerField(
        null=True, blank=True, help_text="Webhooks and polls: points stored."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "connector_logs"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "connector", "created_at"], name="connector_logs_list"),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.status} ({self.connector_id})"


class RuleOperator(models.TextChoices):
    """How a rule compares the value at its path."""

    GT = "gt", "greater than"
    GTE = "gte", "greater than or equal to"
    LT = "lt", "less than"
    LTE = "lte", "less than or equal to"
    EQ = "eq", "equal to"
    NE = "ne", "not equal to"
    CHANGED = "changed", "changed from the previous point"
    CHANGED_TO = "changed_to", "changed to"


class Rule(TenantOwnedModel):
    """Fires an outbound connector when a stored point matches, at most once per cooldown.

    The cooldown is counted per device in device time: a device that uploads an hour of
    buffered overspeed fires once per cooldown of that hour, not once per point.
    """

    name = models.CharField(max_length=200)
    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="rules")
    device = models.ForeignKey(
        Device,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="connector_rules",
        help_text="Empty: every device of the tenant.",
    )
    path = models.CharField(max_length=200, help_text="Dotted path into data, e.g. gps.speed.")
    operator = models.CharField(max_length=16, choices=RuleOperator.choices)
    value = models.JSONField(null=True, blank=True)
    cooldown_seconds = models.PositiveIntegerField(default=300)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "connector_rules"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="connector_rules_name"),
        ]
        indexes = [models.Index(fields=["tenant", "is_active"], name="connector_rules_active")]

    def __str__(self) -> str:
        return self.name


class RuleDeviceState(TenantOwnedModel):
    """What a rule last saw of one device: the value compared, its time, the last firing."""

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="device_states")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    last_ts = models.DateTimeField(null=True, blank=True)
    last_value = models.JSONField(null=True, blank=True)
    last_fired_ts = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "connector_rule_states"
        constraints = [
            models.UniqueConstraint(fields=["rule", "device"], name="connector_rule_state_once"),
        ]
        indexes = [models.Index(fields=["tenant", "rule"], name="connector_rule_states_rule")]

    def __str__(self) -> str:
        return f"rule {self.rule_id} on device {self.device_id}"
