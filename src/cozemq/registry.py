"""COZE_MQ_TYPE -> backend class, through the entry-point group ``cozemq.backends``.

Backends import lazily: only the chosen one is loaded. A third-party package adds a backend
by declaring an entry point in that group; nothing in the core needs to change.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from .errors import BackendNotInstalled, ConfigurationError

BACKEND_GROUP = "cozemq.backends"
KIT_GROUP = "cozemq.kits"

# Coze Studio's values, plus cozemq's in-process one; value -> pip extra that installs it.
KNOWN_BACKENDS: dict[str, str | None] = {
    "nats": "nats",
    "kafka": "kafka",
    "nsq": "nsq",
    "rmq": "rocketmq",
    "pulsar": "pulsar",
    "memory": None,
}
ALIASES = {"rocketmq": "rmq"}


def canonical_name(mq_type: str | None) -> str:
    if mq_type is None or not mq_type.strip():
        raise ConfigurationError(
            f"COZE_MQ_TYPE is not set; set it to one of: {', '.join(valid_names())}"
        )
    name = mq_type.strip().lower()
    return ALIASES.get(name, name)


def valid_names() -> list[str]:
    installed = {ep.name for ep in entry_points(group=BACKEND_GROUP)}
    return sorted(set(KNOWN_BACKENDS) | set(ALIASES) | installed)


def _entry_point(group: str, name: str) -> EntryPoint | None:
    found = entry_points(group=group, name=name)
    return next(iter(found), None)


def _load(group: str, what: str, mq_type: str | None) -> Any:
    name = canonical_name(mq_type)
    ep = _entry_point(group, name)
    if ep is None:
        if name in KNOWN_BACKENDS:
            raise BackendNotInstalled(
                f"COZE_MQ_TYPE={mq_type!r}: the {name} {what} is not installed; "
                f"run: pip install \"cozemq[{KNOWN_BACKENDS[name]}]\""
            )
        raise ConfigurationError(
            f"COZE_MQ_TYPE={mq_type!r} is not a known message queue type; "
            f"valid values: {', '.join(valid_names())}"
        )
    try:
        return ep.load()
    except (ImportError, AttributeError) as exc:
        raise BackendNotInstalled(
            f"COZE_MQ_TYPE={mq_type!r}: the {name} {what} failed to import ({exc}); "
            f"reinstall it: pip install \"cozemq[{KNOWN_BACKENDS.get(name) or name}]\""
        ) from exc


def backend_class(mq_type: str | None) -> Any:
    """The Backend subclass registered for ``mq_type`` (an alias is resolved first)."""
    return _load(BACKEND_GROUP, "backend", mq_type)


def kit_class(mq_type: str | None) -> Any:
    """The BrokerKit subclass that runs a local broker for ``mq_type``."""
    return _load(KIT_GROUP, "broker kit", mq_type)


def kit_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=KIT_GROUP))
