"""Workloads are small TOML files, modelled on the OpenMessaging Benchmark's standard ones."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import ConfigurationError

HEADER_SIZE = 14  # producer id (2), sequence (4), send time in microseconds (8)


@dataclass(frozen=True)
class Workload:
    name: str
    description: str = ""
    message_size: int = 100
    message_count: int = 10_000
    """Messages sent in total (split between producers); every loop in the bench is bounded."""
    rate: int = 0
    """Messages per second across all producers; 0 sends as fast as possible."""
    batch_size: int = 1
    producers: int = 1
    consumers_per_group: int = 1
    groups: int = 1

    def __post_init__(self) -> None:
        if self.message_size < HEADER_SIZE:
            raise ConfigurationError(
                f"workload {self.name}: message_size must be >= {HEADER_SIZE} bytes"
            )
        for field in ("message_count", "producers", "consumers_per_group", "groups",
                      "batch_size"):
            if getattr(self, field) < 1:
                raise ConfigurationError(f"workload {self.name}: {field} must be >= 1")
        if self.rate < 0:
            raise ConfigurationError(f"workload {self.name}: rate must be >= 0")


def _builtin() -> dict[str, str]:
    folder = resources.files(__package__).joinpath("workloads")
    return {p.name.removesuffix(".toml"): p.read_text() for p in folder.iterdir()
            if p.name.endswith(".toml")}


def workload_names() -> list[str]:
    return sorted(_builtin())


def load_workload(name_or_path: str) -> Workload:
    """A built-in workload by name, or a TOML file by path."""
    builtin = _builtin()
    if name_or_path in builtin:
        text = builtin[name_or_path]
    elif Path(name_or_path).is_file():
        text = Path(name_or_path).read_text()
    else:
        raise ConfigurationError(
            f"workload {name_or_path!r} is neither a file nor one of: {', '.join(sorted(builtin))}"
        )
    try:
        return Workload(**tomllib.loads(text))
    except (tomllib.TOMLDecodeError, TypeError) as exc:
        raise ConfigurationError(f"workload {name_or_path!r}: {exc}") from None
