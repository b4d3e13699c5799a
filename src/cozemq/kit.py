"""Local brokers as plain processes: obtain, start on free loopback ports, wait until they
really serve, stop, kill and restart. Used by `cozemq broker`, `cozemq demo` and the tests.

A backend package registers its kit under the entry-point group ``cozemq.kits``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from .errors import EventBusError

CACHE_DIR = Path(os.environ.get("COZEMQ_CACHE_DIR", Path.home() / ".cache" / "cozemq"))
RUN_DIR = CACHE_DIR / "run"


class KitError(EventBusError):
    """A local broker could not be obtained or started."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loopback_shim() -> Path:
    """An LD_PRELOAD library (our loopback_bind.c) that turns binds to the wildcard address into
    binds to 127.0.0.1, for brokers with no bind-address setting. Compiled once into the cache."""
    source = resources.files(__package__).joinpath("loopback_bind.c").read_bytes()
    target = CACHE_DIR / f"libcozemq_loopback-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if target.is_file():
        return target
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise KitError("gcc is needed to build the loopback bind shim (apt-get install gcc)")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix=".shim-") as tmp:
        src, out = Path(tmp) / "loopback_bind.c", Path(tmp) / "shim.so"
        src.write_bytes(source)
        done = subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-o", str(out), str(src), "-ldl"],
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise KitError(f"gcc could not build the loopback shim:\n{done.stderr[-2000:]}")
        out.replace(target)
    return target


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class BrokerKit(ABC):
    """One local broker. Ports and data directory stay the same across restarts."""

    name: ClassVar[str]
    port_names: ClassVar[tuple[str, ...]]
    start_timeout: ClassVar[float] = 60.0
    stop_grace: ClassVar[float] = 10.0
    can_restart: ClassVar[bool] = True

    def __init__(self, workdir: Path | str | None = None) -> None:
        self.workdir = Path(workdir) if workdir else Path(
            tempfile.mkdtemp(prefix=f"cozemq-{self.name}-")
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ports: dict[str, int] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "broker.log"

    # -- what each kit says ---------------------------------------------------------------

    def prepare(self) -> None:
        """Obtain the server (cached outside the repository) and write its config files."""

    @abstractmethod
    def command(self) -> list[str]:
        """The server's command line."""

    @abstractmethod
    def ready(self) -> bool:
        """One quick probe that the broker serves requests (not just an open port)."""

    @abstractmethod
    def env(self) -> dict[str, str]:
        """The environment a cozemq client needs to use this broker."""

    # -- life cycle -------------------------------------------------------------------------

    def start(self, timeout: float | None = None) -> None:
        if not self.ports:
            self.ports = {name: free_port() for name in self.port_names}
        self.prepare()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, start_new_session=True,
            )
        self.pid = self.process.pid
        self._wait_ready(self.start_timeout if timeout is None else timeout)

    def _wait_ready(self, timeout: float) -> None:
        started = time.monotonic()
        pause = 0.02
        while time.monotonic() - started < timeout:
            if not self.alive():
                raise KitError(
                    f"{self.name} exited during start-up; last lines of {self.log_path}:\n"
                    + log_tail(self.log_path)
                )
            if self.ready():
                return
            time.sleep(pause)
            pause = min(0.25, pause * 1.5)
        self.stop()
        raise KitError(
            f"{self.name} did not become ready within {timeout:.0f}s; last lines of "
            f"{self.log_path}:\n" + log_tail(self.log_path)
        )

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _signal(self, sig: int) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def _wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return True
            time.sleep(0.02)
        return not self.alive()

    def stop(self, grace: float | None = None) -> None:
        """SIGTERM, then SIGKILL after the grace period."""
        if not self.alive():
            return
        self._signal(signal.SIGTERM)
        if not self._wait_exit(self.stop_grace if grace is None else grace):
            self.kill()

    def kill(self) -> None:
        """SIGKILL: the crash the restart tests simulate."""
        self._signal(signal.SIGKILL)
        self._wait_exit(10)

    def restart(self, *, kill: bool = True, timeout: float | None = None) -> None:
        self.kill() if kill else self.stop()
        self.start(timeout)

    # -- remembered between `cozemq broker up` and `down` ------------------------------------

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "ports": self.ports,
                "workdir": str(self.workdir), "env": self.env()}

    def save_state(self) -> Path:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        path = RUN_DIR / f"{self.name}.json"
        path.write_text(json.dumps(self.state(), indent=2))
        return path

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BrokerKit:
        kit = cls(state["workdir"])
        kit.ports = {k: int(v) for k, v in state["ports"].items()}
        kit.pid = state.get("pid")
        return kit


class ExternalBroker(BrokerKit):
    """A broker someone else runs (docker compose, a staging cluster): nothing to start or stop.

    The tests use it when COZEMQ_TEST_<NAME>_SERVER is set, instead of the native kit.
    """

    port_names: ClassVar[tuple[str, ...]] = ()
    can_restart: ClassVar[bool] = False

    def __init__(self, mq_type: str, env: dict[str, str]) -> None:
        super().__init__(Path(tempfile.gettempdir()))
        self.name = mq_type  # type: ignore[misc]
        self._env = {"COZE_MQ_TYPE": mq_type, **env}

    def command(self) -> list[str]:
        raise KitError(f"the external {self.name} broker is not started by cozemq")

    def start(self, timeout: float | None = None) -> None:
        return None

    def stop(self, grace: float | None = None) -> None:
        return None

    def kill(self) -> None:
        raise KitError(f"the external {self.name} broker cannot be killed by cozemq")

    def alive(self) -> bool:
        return True

    def ready(self) -> bool:
        return True

    def env(self) -> dict[str, str]:
        return dict(self._env)


def external_broker(mq_type: str) -> ExternalBroker | None:
    """The broker named by COZEMQ_TEST_<TYPE>_SERVER, if set (e.g. COZEMQ_TEST_KAFKA_SERVER),
    with any further client settings from COZEMQ_TEST_<TYPE>_ENV ("NAME=value;NAME=value")."""
    prefix = f"COZEMQ_TEST_{mq_type.upper()}"
    address = os.environ.get(f"{prefix}_SERVER")
    if not address:
        return None
    env = {"MQ_NAME_SERVER": address}
    for item in os.environ.get(f"{prefix}_ENV", "").split(";"):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            env[name.strip()] = value.strip()
    return ExternalBroker(mq_type, env)
