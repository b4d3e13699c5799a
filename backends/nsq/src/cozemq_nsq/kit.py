"""nsqd + nsqlookupd v1.3.0, built from the Go module proxy, as two loopback processes.

The binaries are built once into ``CACHE_DIR/nsq/<version>/bin`` through a small wrapper
module (``go install ...@v1.3.0`` refuses nsq's own ``replace`` directive), in a temporary
directory renamed into place, so a second start needs no network and no compiler.

One kit runs both daemons. ``kill()`` and ``restart(kill=True)`` crash and restart nsqd only
(the broker that holds messages), keeping its ports and data directory; nsqlookupd keeps
running, as it would in a deployment. ``stop()`` stops both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

from cozemq.kit import CACHE_DIR, BrokerKit, KitError, log_tail

VERSION = "v1.3.0"
GO_SVC_REPLACE = (
    "github.com/judwhite/go-svc=github.com/mreiferson/go-svc@v1.2.2-0.20210815184239-7a96e00010f6"
)
"""The replace directive of nsq's own go.mod (github.com/nsqio/nsq@v1.3.0/go.mod)."""

APPS = ("nsqd", "nsqlookupd")

DURABLE_FLAGS = ("--mem-queue-size=0", "--sync-timeout=100ms")
"""Every message goes through the disk queue, synced at least every 100 ms: what nsqd has
accepted more than ~100 ms before a SIGKILL survives it. Messages delivered to a consumer and
not yet finished are lost on SIGKILL whatever the flags (nsqd keeps them in memory only)."""


def bin_dir(version: str = VERSION) -> Path:
    return CACHE_DIR / "nsq" / version / "bin"


def ensure_binaries(version: str = VERSION) -> Path:
    """Build nsqd and nsqlookupd with ``go`` unless cached; atomic (temp dir, then rename)."""
    target = bin_dir(version)
    if all((target / app).is_file() for app in APPS):
        return target
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists()
                                else None)
    if go is None:
        raise KitError("building nsqd needs the Go toolchain ('go' on PATH)")
    version_dir = target.parent
    version_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".build-{version}-", dir=version_dir.parent))
    try:
        module = staging / "wrapper"
        module.mkdir()
        (staging / "bin").mkdir()
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
        steps = [
            [go, "mod", "init", "local/cozemq-nsq-build"],
            [go, "mod", "edit", "-replace", GO_SVC_REPLACE],
            [go, "get", *(f"github.com/nsqio/nsq/apps/{app}@{version}" for app in APPS)],
            *([go, "build", "-trimpath", "-o", str(staging / "bin" / app),
               f"github.com/nsqio/nsq/apps/{app}"] for app in APPS),
        ]
        for step in steps:
            done = subprocess.run(step, cwd=module, env=env, capture_output=True, text=True,
                                  timeout=600, check=False)
            if done.returncode != 0:
                raise KitError(f"building nsq {version} failed at {' '.join(step[1:3])}:\n"
                               + (done.stderr or done.stdout)[-3000:])
        shutil.rmtree(module)
        try:
            os.rename(staging, version_dir)
        except OSError:
            if not all((target / app).is_file() for app in APPS):  # not a concurrent build
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _ping(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as response:
            return bool(response.status == 200 and response.read().strip() == b"OK")
    except OSError:
        return False


class NsqKit(BrokerKit):
    name = "nsq"
    port_names: ClassVar[tuple[str, ...]] = ("tcp", "http", "lookupd_tcp", "lookupd_http")
    start_timeout = 30.0
    stop_grace = 10.0

    def __init__(self, workdir: Path | str | None = None, *,
                 extra_args: list[str] | None = None,
                 client_env: dict[str, str] | None = None,
                 durable: bool = True) -> None:
        super().__init__(workdir)
        self.extra_args = extra_args or []
        self.client_env = client_env or {}
        self.durable = durable
        self.lookupd: subprocess.Popen[bytes] | None = None
        self.lookupd_pid: int | None = None

    # -- addresses --------------------------------------------------------------------------

    @property
    def nsqd_tcp(self) -> str:
        return f"127.0.0.1:{self.ports['tcp']}"

    @property
    def nsqd_http(self) -> str:
        return f"127.0.0.1:{self.ports['http']}"

    @property
    def lookupd_http(self) -> str:
        return f"http://127.0.0.1:{self.ports['lookupd_http']}"

    @property
    def lookupd_log_path(self) -> Path:
        return self.workdir / "nsqlookupd.log"

    # -- BrokerKit --------------------------------------------------------------------------

    def prepare(self) -> None:
        self.bin = ensure_binaries()
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            str(self.bin / "nsqd"),
            f"--tcp-address=127.0.0.1:{self.ports['tcp']}",
            f"--http-address=127.0.0.1:{self.ports['http']}",
            "--broadcast-address=127.0.0.1",
            f"--lookupd-tcp-address=127.0.0.1:{self.ports['lookupd_tcp']}",
            f"--data-path={self.workdir / 'data'}",
            *(DURABLE_FLAGS if self.durable else ()),
            *self.extra_args,
        ]

    def lookupd_command(self) -> list[str]:
        return [
            str(self.bin / "nsqlookupd"),
            f"--tcp-address=127.0.0.1:{self.ports['lookupd_tcp']}",
            f"--http-address=127.0.0.1:{self.ports['lookupd_http']}",
            "--broadcast-address=127.0.0.1",
        ]

    def ready(self) -> bool:
        return _ping(self.ports["lookupd_http"]) and _ping(self.ports["http"])

    def env(self) -> dict[str, str]:
        """nsqd's TCP address, as Coze sets MQ_NAME_SERVER; lookupd is there for readers."""
        return {"COZE_MQ_TYPE": "nsq", "MQ_NAME_SERVER": self.nsqd_tcp, **self.client_env}

    # -- life cycle of the second process ---------------------------------------------------

    def lookupd_alive(self) -> bool:
        if self.lookupd is not None:
            return self.lookupd.poll() is None
        if self.lookupd_pid is None:
            return False
        try:
            os.kill(self.lookupd_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def start(self, timeout: float | None = None) -> None:
        """nsqlookupd first (unless it is still running), then nsqd; ready when both ping."""
        if not self.ports:
            from cozemq.kit import free_port
            self.ports = {name: free_port() for name in self.port_names}
        self.prepare()
        if not self.lookupd_alive():
            with self.lookupd_log_path.open("ab") as log:
                self.lookupd = subprocess.Popen(
                    self.lookupd_command(), stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, cwd=self.workdir, start_new_session=True,
                )
            self.lookupd_pid = self.lookupd.pid
        try:
            super().start(timeout)
        except KitError as exc:
            lookupd_log = log_tail(self.lookupd_log_path)
            self.stop(grace=2)  # leave no daemon behind
            raise KitError(f"{exc}\nnsqlookupd log:\n{lookupd_log}") from None

    def stop(self, grace: float | None = None) -> None:
        """SIGTERM to both daemons at once (each takes ~2 s), SIGKILL after the grace."""
        grace = self.stop_grace if grace is None else grace
        if self.alive():
            self._signal(signal.SIGTERM)
        self._signal_lookupd(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while (self.alive() or self.lookupd_alive()) and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.alive():
            self._signal(signal.SIGKILL)
        if self.lookupd_alive():
            self._signal_lookupd(signal.SIGKILL)
        self._wait_exit(10)
        self._wait_lookupd_exit(10)

    def kill(self) -> None:
        """SIGKILL nsqd (the crash the restart test simulates); nsqlookupd keeps running."""
        super().kill()

    def kill_all(self) -> None:
        super().kill()
        self._signal_lookupd(signal.SIGKILL)
        self._wait_lookupd_exit(10)

    def _signal_lookupd(self, sig: int) -> None:
        if self.lookupd_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.lookupd_pid, sig)

    def _wait_lookupd_exit(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.lookupd_alive() and time.monotonic() < deadline:
            time.sleep(0.02)

    # -- remembered between `cozemq broker up` and `down` ------------------------------------

    def state(self) -> dict[str, Any]:
        return {**super().state(), "lookupd_pid": self.lookupd_pid}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> NsqKit:
        kit = cls(state["workdir"])
        kit.ports = {k: int(v) for k, v in state["ports"].items()}
        kit.pid = state.get("pid")
        kit.lookupd_pid = state.get("lookupd_pid")
        return kit
