"""Header names cozemq reserves, and the rules every backend's headers follow."""

from __future__ import annotations

from collections.abc import Mapping

from .errors import InvalidArgument

RESERVED_PREFIX = "cozemq-"

# Written on a dead-lettered message, beside the original headers.
DLQ_ORIGINAL_TOPIC = "cozemq-original-topic"
DLQ_GROUP = "cozemq-group"
DLQ_ATTEMPTS = "cozemq-attempts"
DLQ_ERROR = "cozemq-error"
DLQ_ORIGINAL_ID = "cozemq-original-id"

# Characters that would break a text header block (NATS, HTTP-like framing).
_FORBIDDEN_IN_NAME = set(":\r\n\0 \t")
_FORBIDDEN_IN_VALUE = set("\r\n\0")


def validate_key(key: str) -> None:
    """A sharding key travels as a header on some brokers, so it follows the value rule."""
    if _FORBIDDEN_IN_VALUE.intersection(key):
        raise InvalidArgument("key must not contain CR, LF or NUL")


def validate_headers(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """Check user headers once, the same way on every backend, and return a plain copy."""
    if not headers:
        return None
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidArgument(
                f"header {name!r}: names and values must be str, got "
                f"{type(name).__name__} -> {type(value).__name__}"
            )
        if not name or _FORBIDDEN_IN_NAME.intersection(name) or not name.isprintable():
            raise InvalidArgument(
                f"header name {name!r} is not allowed: it must be non-empty printable text "
                "without ':', whitespace or control characters"
            )
        if _FORBIDDEN_IN_VALUE.intersection(value):
            raise InvalidArgument(
                f"header {name!r}: the value must not contain CR, LF or NUL"
            )
        if name.lower().startswith(RESERVED_PREFIX):
            raise InvalidArgument(
                f"header {name!r}: names starting with {RESERVED_PREFIX!r} are reserved by cozemq"
            )
        checked[name] = value
    return checked
