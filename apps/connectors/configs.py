"""What a connector's ``config`` may hold, per kind, checked before anything is saved.

``validate_config`` returns the config with defaults filled in, or raises ConfigError
naming the field (``config.url``, ``config.mapping.device``) so the API answers a 400
that points at it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from apps.connectors.mapping import TRANSFORMS
from apps.connectors.models import ConnectorKind

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
AUTH_TYPES = ("none", "bearer", "basic", "hmac")
DEVICE_LOOKUPS = ("external_id", "token")
DEFAULT_SIGNATURE_HEADER = "X-Signature"
MAX_TIMEOUT_SECONDS = 60
MIN_POLL_SECONDS = 10
MAX_HEADERS = 20


class ConfigError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def validate_config(kind: str, config: Any, secret: str) -> dict[str, Any]:
    """The config of a connector of ``kind``, checked and with its defaults."""
    if not isinstance(config, dict):
        raise ConfigError("config", "Must be a JSON object.")
    if kind == ConnectorKind.OUTBOUND_HTTP:
        return outbound_config(config, secret)
    if kind == ConnectorKind.WEBHOOK:
        return webhook_config(config)
    if kind == ConnectorKind.COLLECTOR:
        return collector_config(config, secret)
    raise ConfigError("kind", f"Must be one of {', '.join(ConnectorKind.values)}.")


def outbound_config(config: dict[str, Any], secret: str) -> dict[str, Any]:
    only_keys(
        config,
        {"url", "method", "headers", "auth", "username", "signature_header", "timeout"}
        | {"body_template"},
    )
    checked = http_target(config, secret, default_method="POST")
    checked["signature_header"] = header_name(
        config.get("signature_header", DEFAULT_SIGNATURE_HEADER), "config.signature_header"
    )
    if "body_template" in config:
        checked["body_template"] = config["body_template"]
    return checked


def webhook_config(config: dict[str, Any]) -> dict[str, Any]:
    only_keys(config, {"mapping", "transforms", "signature_header"})
    return {
        "mapping": mapping_config(config.get("mapping"), "config.mapping"),
        "transforms": transforms_config(config.get("transforms", {}), "config.transforms"),
        "signature_header": header_name(
            config.get("signature_header", DEFAULT_SIGNATURE_HEADER), "config.signature_header"
        ),
    }


def collector_config(config: dict[str, Any], secret: str) -> dict[str, Any]:
    only_keys(
        config,
        {"url", "method", "headers", "auth", "username", "timeout", "interval_seconds"}
        | {"mapping", "transforms"},
    )
    checked = http_target(config, secret, default_method="GET")
    if checked["auth"] == "hmac":
        raise ConfigError(
            "config.auth", "A collector source authenticates with none, bearer or basic."
        )
    interval = config.get("interval_seconds", 60)
    if not is_integer(interval) or interval < MIN_POLL_SECONDS:
        raise ConfigError(
            "config.interval_seconds",
            f"Must be a whole number of seconds, {MIN_POLL_SECONDS} or more.",
        )
    checked["interval_seconds"] = interval
    checked["mapping"] = mapping_config(config.get("mapping"), "config.mapping")
    checked["transforms"] = transforms_config(config.get("transforms", {}), "config.transforms")
    return checked


def http_target(config: dict[str, Any], secret: str, default_method: str) -> dict[str, Any]:
    """URL, method, headers, auth and timeout, shared by outbound connectors and collectors."""
    url = config.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("config.url", "Required: an http:// or https:// URL.")
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("config.url", "Must be an http:// or https:// URL with a host.")
    if parts.username or parts.password:
        raise ConfigError("config.url", "Put credentials in auth and the secret, not in the URL.")

    method = config.get("method", default_method)
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise ConfigError("config.method", f"Must be one of {', '.join(METHODS)}.")

    headers = config.get("headers", {})
    if not isinstance(headers, dict) or len(headers) > MAX_HEADERS:
        raise ConfigError("config.headers", f"Must be an object of at most {MAX_HEADERS} headers.")
    for name, value in headers.items():
        header_name(name, f"config.headers.{name}")
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise ConfigError(f"config.headers.{name}", "Must be a one-line string.")
        if name.lower() == "authorization":
            raise ConfigError(
                f"config.headers.{name}", "Set auth and the secret instead: headers are readable."
            )

    auth = config.get("auth", "none")
    if auth not in AUTH_TYPES:
        raise ConfigError("config.auth", f"Must be one of {', '.join(AUTH_TYPES)}.")
    username = config.get("username", "")
    if auth == "basic" and (not isinstance(username, str) or not username):
        raise ConfigError("config.username", "Basic auth needs a username.")
    if auth != "none" and not secret:
        raise ConfigError("secret", f"{auth} auth needs a secret.")

    timeout = config.get("timeout", 10)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ConfigError("config.timeout", "Must be a number of seconds.")
    if not 0 < timeout <= MAX_TIMEOUT_SECONDS:
        raise ConfigError(
            "config.timeout", f"Must be more than 0 and at most {MAX_TIMEOUT_SECONDS}."
        )

    checked: dict[str, Any] = {
        "url": url,
        "method": method.upper(),
        "headers": headers,
        "auth": auth,
        "timeout": timeout,
    }
    if auth == "basic":
        checked["username"] = username
    return checked


def mapping_config(mapping: Any, field: str) -> dict[str, Any]:
    if not isinstance(mapping, dict):
        raise ConfigError(field, "Required: an object with at least device.")
    only_keys(mapping, {"items", "device", "device_by", "ts", "fields", "data"}, field)
    checked: dict[str, Any] = {"device": dotted_path(mapping.get("device"), f"{field}.device")}
    device_by = mapping.get("device_by", "external_id")
    if device_by not in DEVICE_LOOKUPS:
        raise ConfigError(f"{field}.device_by", f"Must be one of {', '.join(DEVICE_LOOKUPS)}.")
    checked["device_by"] = device_by
    for optional in ("items", "ts", "data"):
        if mapping.get(optional):
            checked[optional] = dotted_path(mapping[optional], f"{field}.{optional}")

    fields = mapping.get("fields")
    if fields is not None:
        if not isinstance(fields, dict) or not fields:
            raise ConfigError(f"{field}.fields", "Must be an object of data path: body path.")
        checked["fields"] = {
            dotted_path(target, f"{field}.fields"): dotted_path(source, f"{field}.fields.{target}")
            for target, source in fields.items()
        }
    return checked


def transforms_config(transforms: Any, field: str) -> dict[str, list[dict[str, Any]]]:
    if not isinstance(transforms, dict):
        raise ConfigError(field, "Must be an object of data path: list of transforms.")
    checked: dict[str, list[dict[str, Any]]] = {}
    for path, steps in transforms.items():
        where = f"{field}.{path}"
        dotted_path(path, field)
        if isinstance(steps, dict):
            steps = [steps]
        if not isinstance(steps, list) or not steps:
            raise ConfigError(where, 'Must be a list of transforms, e.g. [{"round": 1}].')
        checked[path] = [
            transform_step(step, f"{where}.{index}") for index, step in enumerate(steps)
        ]
    return checked


def transform_step(step: Any, where: str) -> dict[str, Any]:
    if not isinstance(step, dict) or len(set(step) & set(TRANSFORMS)) != 1:
        raise ConfigError(where, f"Must be an object with one of {', '.join(TRANSFORMS)}.")
    if "round" in step:
        digits = step["round"]
        if not is_integer(digits) or not 0 <= digits <= 12:
            raise ConfigError(f"{where}.round", "Must be a number of digits from 0 to 12.")
        return {"round": digits}
    if "clamp" in step:
        bounds = step["clamp"]
        if (
            not isinstance(bounds, list)
            or len(bounds) != 2
            or not all(bound is None or is_number(bound) for bound in bounds)
            or bounds == [None, None]
        ):
            raise ConfigError(f"{where}.clamp", "Must be [low, high]; null leaves a side open.")
        low, high = bounds
        if low is not None and high is not None and low > high:
            raise ConfigError(f"{where}.clamp", "The low bound is above the high bound.")
        return {"clamp": [low, high]}
    factor, offset = step["scale"], step.get("offset", 0)
    if not is_number(factor) or not is_number(offset):
        raise ConfigError(f"{where}.scale", "Must be a number (and offset, if given, too).")
    return {"scale": factor, "offset": offset}


def dotted_path(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(field, "Required: a dotted path such as vehicle.speed.")
    path: str = value.strip()
    if any(not step for step in path.split(".")):
        raise ConfigError(field, f"{path!r} is not a dotted path such as vehicle.speed.")
    return path


def header_name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value or not all(c.isalnum() or c in "-_" for c in value):
        raise ConfigError(field, "Must be an HTTP header name (letters, digits, - and _).")
    return value


def only_keys(config: dict[str, Any], allowed: set[str], field: str = "config") -> None:
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ConfigError(f"{field}.{unknown[0]}", f"Unknown; use {', '.join(sorted(allowed))}.")


def is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def is_integer(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int)
