"""What the conformance suite needs from a backend: a way to make buses and, where it can,
to crash and restart the broker."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from ..backend import Capabilities
from ..bus import EventBus
from ..errors import NotSupported
from ..kit import BrokerKit
from ..registry import backend_class


class Harness:
    """Subclass or instantiate per backend. ``env`` uses the variable names users export."""

    name: str = "backend"
    redelivery_wait: float = 1.0
    """Seconds after which an unacknowledged message would have been redelivered."""

    def __init__(self, env: Mapping[str, str], *, name: str | None = None) -> None:
        self._env = dict(env)
        if name:
            self.name = name

    def env(self, **extra: str) -> dict[str, str]:
        return {**self._env, **extra}

    def make_bus(self, **extra_env: str) -> EventBus:
        return EventBus.from_env(self.env(**extra_env))

    @property
    def capabilities(self) -> Capabilities:
        """Declared before connecting; a connected bus may refine max_message_size."""
        return self.make_bus().capabilities

    @property
    def can_restart(self) -> bool:
        return False

    def restart_broker(self) -> None:
        """SIGKILL the broker and start it again on the same ports and data."""
        raise NotSupported(f"{self.name}: this harness cannot restart its broker")

    def __repr__(self) -> str:
        return f"<Harness {self.name}>"


class MemoryHarness(Harness):
    """The in-process backend; each harness gets its own broker."""

    name = "memory"

    def __init__(self) -> None:
        super().__init__({"COZE_MQ_TYPE": "memory", "MQ_NAME_SERVER": f"h-{uuid.uuid4().hex}"})


class KitHarness(Harness):
    """A backend against a broker run by its kit (see cozemq.kit)."""

    def __init__(self, kit: BrokerKit, *, name: str | None = None,
                 extra_env: Mapping[str, str] | None = None,
                 redelivery_wait: float | None = None) -> None:
        super().__init__({}, name=name or kit.name)
        self.kit = kit
        self.extra_env = dict(extra_env or {})
        if redelivery_wait is not None:
            self.redelivery_wait = redelivery_wait
        backend_class(self.env()["COZE_MQ_TYPE"])  # fail early if the backend is missing

    def env(self, **extra: str) -> dict[str, str]:
        return {**self.kit.env(), **self.extra_env, **extra}

    @property
    def can_restart(self) -> bool:
        return self.kit.can_restart

    def restart_broker(self) -> None:
        if not self.kit.can_restart:
            super().restart_broker()
        self.kit.restart(kill=True)
