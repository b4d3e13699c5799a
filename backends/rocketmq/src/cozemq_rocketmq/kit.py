"""Apache RocketMQ 5.3.3 as local processes: a name server, and a proxy in local mode with the
broker inside it. Jars from Maven Central (mvn dependency:copy-dependencies), cached under
~/.cache/cozemq/rocketmq/5.3.3; Java 17; every port on 127.0.0.1.

RocketMQ has no bind-address setting for the proxy's gRPC and remoting ports and the broker's HA
port, so both JVMs run with cozemq.kit.loopback_shim(), an LD_PRELOAD library that turns a bind
to 0.0.0.0 into a bind to 127.0.0.1.

The two JVMs share one process group (the name server's), so `cozemq broker down` and the base
class's signals reach both. Ports and the store survive stop, kill and restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from cozemq.kit import CACHE_DIR, BrokerKit, KitError, free_port, log_tail, loopback_shim

from .admin import GET_BROKER_CLUSTER_INFO, SUCCESS, request_blocking

VERSION = "5.3.3"
CLUSTER = "DefaultCluster"
BROKER_NAME = "broker-a"
ADMIN_USER = "cozemq-admin"
"""The super user of a kit started with acl=True (its password is made per kit)."""

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.cozemq</groupId>
  <artifactId>rocketmq-server</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.rocketmq</groupId><artifactId>rocketmq-proxy</artifactId><version>{v}</version></dependency>
    <dependency><groupId>org.apache.rocketmq</groupId><artifactId>rocketmq-namesrv</artifactId><version>{v}</version></dependency>
    <dependency><groupId>org.apache.rocketmq</groupId><artifactId>rocketmq-tools</artifactId><version>{v}</version></dependency>
  </dependencies>
</project>
"""

JAVA_OPENS = [
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-exports=java.base/sun.nio.ch=ALL-UNNAMED",
]

AUTH_PROVIDERS = {
    "authenticationProvider":
        "org.apache.rocketmq.auth.authentication.provider.DefaultAuthenticationProvider",
    "authorizationProvider":
        "org.apache.rocketmq.auth.authorization.provider.DefaultAuthorizationProvider",
}


def cache_dir() -> Path:
    return CACHE_DIR / "rocketmq" / VERSION


def server_libs() -> Path:
    """The server's jars, resolved by Maven once and cached (built aside, then renamed)."""
    libs = cache_dir() / "libs"
    if (libs / f"rocketmq-proxy-{VERSION}.jar").exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KitError("the RocketMQ kit needs Maven (mvn) to fetch the server jars once")
    cache_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=".libs-") as tmp:
        (Path(tmp) / "pom.xml").write_text(POM.format(v=VERSION))
        out = Path(tmp) / "libs"
        done = subprocess.run(
            [mvn, "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={out}"],
            cwd=tmp, capture_output=True, text=True, check=False,
        )
        if done.returncode != 0:
            raise KitError(f"mvn could not fetch RocketMQ {VERSION}:\n{done.stdout[-3000:]}"
                           f"{done.stderr[-2000:]}")
        with contextlib.suppress(OSError):  # another process may have won the race
            out.rename(libs)
    return libs


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def broker_port(taken: set[int]) -> int:
    """A broker listen port P with P-2 (fast channel) and P+1 (HA) free as well."""
    for _ in range(200):
        port = free_port()
        block = {port - 2, port - 1, port, port + 1}
        if port > 1026 and not block & taken and all(_bindable(p) for p in block):
            return port
    raise KitError("no free block of 4 ports for the RocketMQ broker")


class RocketMQKit(BrokerKit):
    """Name server + proxy (local mode, broker inside). ``acl=True`` enables ACL 2.0 with a
    super user whose credentials ``env()`` hands out."""

    name = "rmq"
    port_names: ClassVar[tuple[str, ...]] = ("namesrv", "grpc", "remoting", "broker")
    start_timeout = 90.0
    stop_grace = 20.0

    def __init__(self, workdir: Path | str | None = None, *, acl: bool = False,
                 min_invisible_ms: int = 1000) -> None:
        super().__init__(workdir)
        self.acl = acl or (self.workdir / "acl.secret").exists()
        self.min_invisible_ms = min_invisible_ms
        self.namesrv_process: subprocess.Popen[bytes] | None = None

    # -- files --------------------------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        return self.workdir

    @property
    def namesrv_log(self) -> Path:
        return self.workdir / "namesrv.log"

    @property
    def admin_secret(self) -> str:
        path = self.workdir / "acl.secret"
        if not path.exists():
            path.write_text(secrets.token_hex(12))
            path.chmod(0o600)
        return path.read_text().strip()

    @property
    def namesrv_addr(self) -> str:
        return f"127.0.0.1:{self.ports['namesrv']}"

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def broker_addr(self) -> str:
        return f"127.0.0.1:{self.ports['broker']}"

    def _allocate_ports(self) -> None:
        ports: dict[str, int] = {}
        for name in ("namesrv", "grpc", "remoting"):
            port = free_port()
            while port in ports.values():
                port = free_port()
            ports[name] = port
        ports["broker"] = broker_port(set(ports.values()))
        self.ports = ports

    def prepare(self) -> None:
        self.libs = server_libs()
        self.shim = loopback_shim()
        store = self.workdir / "store"
        (self.workdir / "home").mkdir(exist_ok=True)
        store.mkdir(exist_ok=True)
        p = self.ports
        (self.workdir / "namesrv.conf").write_text(
            f"listenPort={p['namesrv']}\nbindAddress=127.0.0.1\n"
        )
        broker = {
            "brokerClusterName": CLUSTER, "brokerName": BROKER_NAME, "brokerId": 0,
            "brokerRole": "ASYNC_MASTER", "flushDiskType": "ASYNC_FLUSH",
            "namesrvAddr": self.namesrv_addr, "brokerIP1": "127.0.0.1",
            "listenPort": p["broker"], "bindAddress": "127.0.0.1",
            "storePathRootDir": store, "storePathCommitLog": store / "commitlog",
            "mappedFileSizeCommitLog": 64 * 1024 * 1024,
            "deleteWhen": "04", "fileReservedTime": 48,
            # Topics are created on purpose (RMQ_AUTO_CREATE_TOPICS or `cozemq topic create`);
            # groups may appear on first use, as in RocketMQ's default configuration.
            "autoCreateTopicEnable": "false", "autoCreateSubscriptionGroup": "true",
            # MIXED topics take keyed (FIFO) and keyless (NORMAL) sends alike.
            "enableMixedMessageType": "true",
        }
        proxy: dict[str, Any] = {
            "rocketMQClusterName": CLUSTER, "namesrvAddr": self.namesrv_addr,
            "grpcServerPort": p["grpc"], "remotingListenPort": p["remoting"],
            "localServeAddr": "127.0.0.1", "grpcShutdownTimeSeconds": 1,
            # RocketMQ's default minimum invisible time is 10 s; a short one lets the tests
            # see redelivery within seconds (RMQ_MIN_INVISIBLE_DURATION must match).
            "minInvisibleTimeMillsForRecv": self.min_invisible_ms,
            # The default minimum long poll is 5 s; 1 s polls let a closing consumer stop fast.
            "grpcClientConsumerMinLongPollingTimeoutMillis": 100,
        }
        if self.acl:
            credentials = {"accessKey": ADMIN_USER, "secretKey": self.admin_secret}
            broker.update({
                "authenticationEnabled": "true", "authorizationEnabled": "true",
                **AUTH_PROVIDERS,
                "authenticationMetadataProvider": "org.apache.rocketmq.auth.authentication."
                "provider.LocalAuthenticationMetadataProvider",
                "authorizationMetadataProvider": "org.apache.rocketmq.auth.authorization."
                "provider.LocalAuthorizationMetadataProvider",
                "initAuthenticationUser": json.dumps(
                    {"username": ADMIN_USER, "password": self.admin_secret}),
                "innerClientAuthenticationCredentials": json.dumps(credentials),
            })
            proxy.update({
                "authenticationEnabled": True, "authorizationEnabled": True, **AUTH_PROVIDERS,
                "authenticationMetadataProvider":
                    "org.apache.rocketmq.proxy.auth.ProxyAuthenticationMetadataProvider",
                "authorizationMetadataProvider":
                    "org.apache.rocketmq.proxy.auth.ProxyAuthorizationMetadataProvider",
                "innerClientAuthenticationCredentials": json.dumps(credentials),
            })
            conf = self.workdir / "conf"
            conf.mkdir(exist_ok=True)
            (conf / "tools.yml").write_text(
                f"accessKey: {ADMIN_USER}\nsecretKey: {self.admin_secret}\n")
        (self.workdir / "broker.conf").write_text(
            "".join(f"{k}={v}\n" for k, v in broker.items()))
        (self.workdir / "rmq-proxy.json").write_text(json.dumps(proxy, indent=2))

    # -- command lines ------------------------------------------------------------------------

    def _java(self, heap: list[str], main: str, args: list[str]) -> list[str]:
        java = str(Path(os.environ["JAVA_HOME"]) / "bin" / "java") if os.environ.get(
            "JAVA_HOME") else (shutil.which("java") or "java")
        return [
            java, *heap, *JAVA_OPENS,
            f"-Drocketmq.home.dir={self.workdir}", f"-Duser.home={self.workdir / 'home'}",
            "-Djava.net.preferIPv4Stack=true", "-XX:-OmitStackTraceInFastThrow",
            "-cp", f"{self.libs}/*", main, *args,
        ]

    def namesrv_command(self) -> list[str]:
        return self._java(["-Xms64m", "-Xmx128m", "-XX:+UseSerialGC"],
                          "org.apache.rocketmq.namesrv.NamesrvStartup",
                          ["-c", str(self.workdir / "namesrv.conf")])

    def command(self) -> list[str]:
        return self._java(
            ["-Xms256m", "-Xmx512m", "-Xmn128m", "-XX:MaxDirectMemorySize=256m",
             "-XX:+UseG1GC"],
            "org.apache.rocketmq.proxy.ProxyStartup",
            ["-pm", "local", "-bc", str(self.workdir / "broker.conf"),
             "-pc", str(self.workdir / "rmq-proxy.json")],
        )

    def _process_env(self) -> dict[str, str]:
        return {**os.environ, "LD_PRELOAD": str(self.shim), "ROCKETMQ_HOME": str(self.workdir)}

    # -- readiness ----------------------------------------------------------------------------

    def namesrv_ready(self) -> bool:
        try:
            response = request_blocking(self.namesrv_addr, GET_BROKER_CLUSTER_INFO, timeout=1)
        except OSError:
            return False
        return response.code == SUCCESS

    def broker_registered(self) -> bool:
        try:
            response = request_blocking(self.namesrv_addr, GET_BROKER_CLUSTER_INFO, timeout=1)
            info = response.json_body() or {}
        except (OSError, ValueError):
            return False
        broker = (info.get("brokerAddrTable") or {}).get(BROKER_NAME) or {}
        addrs: dict[str, str] = broker.get("brokerAddrs") or {}
        return self.broker_addr in addrs.values()

    def grpc_ready(self) -> bool:
        """The gRPC endpoint answers a route query (any status is an answer)."""
        import grpc
        from rocketmq.grpc_protocol import MessagingServiceStub, QueryRouteRequest

        request = QueryRouteRequest()
        request.topic.name = "TBW102"
        channel = grpc.insecure_channel(self.grpc_endpoint)
        try:
            response = MessagingServiceStub(channel).QueryRoute(request, timeout=1)
        except grpc.RpcError:
            return False
        finally:
            channel.close()
        return bool(response.status.code)

    def ready(self) -> bool:
        return self.broker_registered() and self.grpc_ready()

    # -- life cycle ---------------------------------------------------------------------------

    def start(self, timeout: float | None = None) -> None:
        if not self.ports:
            self._allocate_ports()
        self.prepare()
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        env = self._process_env()
        if not (self.namesrv_process and self.namesrv_process.poll() is None):
            with self.namesrv_log.open("ab") as log:
                self.namesrv_process = subprocess.Popen(
                    self.namesrv_command(), stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, cwd=self.workdir, env=env,
                    process_group=0,  # its own group; the proxy joins it
                )
            self.pid = self.namesrv_process.pid
        self._wait(lambda: self.namesrv_ready(), deadline, "the name server",
                   self.namesrv_log, [self.namesrv_process])
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, env=env, process_group=self.pid,
            )
        self._wait(self.ready, deadline, "the proxy and broker", self.log_path,
                   [self.namesrv_process, self.process])

    def _wait(self, check: Any, deadline: float, what: str, log: Path,
              processes: list[subprocess.Popen[bytes] | None]) -> None:
        pause = 0.05
        while time.monotonic() < deadline:
            for process in processes:
                if process is not None and process.poll() is not None:
                    self.kill()
                    raise KitError(f"{self.name}: {what} exited during start-up; last lines of "
                                   f"{log}:\n{log_tail(log)}")
            if check():
                return
            time.sleep(pause)
            pause = min(0.25, pause * 1.5)
        self.stop()
        raise KitError(f"{self.name}: {what} did not become ready in time; last lines of "
                       f"{log}:\n{log_tail(log)}")

    def _children(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in (self.process, self.namesrv_process) if p is not None]

    def alive(self) -> bool:
        """True while either JVM runs."""
        children = self._children()
        if children:
            return any(p.poll() is None for p in children)
        if self.pid is None:
            return False
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, grace: float | None = None) -> None:
        """SIGTERM the proxy, then the name server; SIGKILL what outlives the grace period."""
        if not self.alive():
            return
        grace = self.stop_grace if grace is None else grace
        deadline = time.monotonic() + grace
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(max(0.1, deadline - time.monotonic()))
        self._signal(signal.SIGTERM)
        if not self._wait_exit(max(0.1, deadline - time.monotonic())):
            self.kill()
        self._reap()

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        for process in self._children():
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        self._wait_exit(10)
        self._reap()

    def _reap(self) -> None:
        for process in self._children():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)

    # -- clients ------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {"COZE_MQ_TYPE": "rmq", "MQ_NAME_SERVER": self.grpc_endpoint,
               "RMQ_NAMESRV_ADDR": self.namesrv_addr,
               "RMQ_MIN_INVISIBLE_DURATION": str(max(1, self.min_invisible_ms // 1000))}
        if self.acl:
            env.update({"RMQ_ACCESS_KEY": ADMIN_USER, "RMQ_SECRET_KEY": self.admin_secret})
        return env

    def state(self) -> dict[str, Any]:
        state = super().state()
        state["env"] = {k: ("******" if k == "RMQ_SECRET_KEY" else v)
                        for k, v in self.env().items()}
        return state
