"""Apache Pulsar standalone (broker + in-process bookie, RocksDB metadata) as one local JVM.

The jars come from Maven Central through ``mvn dependency:copy-dependencies`` on a small pom
that imports Pulsar's own BOM (without it the opentelemetry jars mix versions and the broker
fails to start). They are cached under ``CACHE_DIR/pulsar/<version>/libs``. The in-process
bookie binds the wildcard address, so the JVM runs with cozemq.kit.loopback_shim(). Everything
listens on 127.0.0.1, data lives under the kit's workdir, and ``restart(kill=True)`` keeps both.

``auth=True`` starts the broker with JWT token authentication (HS256, a secret key made for
this workdir) and authorization; the kit's own environment then carries a super-user token,
and :meth:`PulsarKit.mint_token` makes tokens for other roles.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import ClassVar

from cozemq.kit import CACHE_DIR, BrokerKit, KitError, loopback_shim

VERSION = "4.2.4"
ADMIN_ROLE = "admin"
DEFAULT_MAX_MESSAGE_SIZE = 5 * 1024 * 1024
FRAME_PADDING = 10 * 1024  # what Pulsar itself allows on top of maxMessageSize

# Java 17 needs these for Pulsar's netty, bookkeeper and metrics code.
JAVA_OPENS = [
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.util.zip=ALL-UNNAMED",
    "--add-opens=java.base/sun.net=ALL-UNNAMED",
    "--add-opens=java.management/sun.management=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.platform=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
]

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.cozemq</groupId>
  <artifactId>pulsar-standalone</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencyManagement>
    <dependencies>
      <dependency>
        <groupId>org.apache.pulsar</groupId><artifactId>pulsar</artifactId>
        <version>{version}</version><type>pom</type><scope>import</scope>
      </dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
    <dependency>
      <groupId>org.apache.pulsar</groupId><artifactId>pulsar-broker</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
    </dependency>
  </dependencies>
</project>
"""

LOG4J2 = """<Configuration status="warn">
  <Appenders>
    <Console name="console" target="SYSTEM_OUT">
      <PatternLayout pattern="%d{HH:mm:ss.SSS} %-5level %c{1} - %msg%n"/>
    </Console>
    <RollingFile name="file" fileName="${sys:pulsar.log.dir}/pulsar.log"
                 filePattern="${sys:pulsar.log.dir}/pulsar-%i.log">
      <PatternLayout pattern="%d{ISO8601} [%t] %-5level %c - %msg%n"/>
      <Policies><SizeBasedTriggeringPolicy size="20 MB"/></Policies>
      <DefaultRolloverStrategy max="2"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="info"><AppenderRef ref="file"/><AppenderRef ref="console" level="warn"/></Root>
  </Loggers>
</Configuration>
"""


def _require(tool: str, why: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise KitError(f"the pulsar kit needs {tool!r} on PATH ({why})")
    return found


def server_libs(version: str = VERSION) -> Path:
    """The broker's jars, fetched once with Maven into the cache (atomically: a temp dir,
    then a rename, so a half-finished download is never taken for a complete one)."""
    home = CACHE_DIR / "pulsar" / version
    libs = home / "libs"
    if (libs / f"pulsar-broker-{version}.jar").is_file():
        return libs
    mvn = _require("mvn", "to fetch Pulsar's jars from Maven Central")
    home.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".libs-", dir=home))
    try:
        (build / "pom.xml").write_text(POM.format(version=version))
        result = subprocess.run(
            [mvn, "-q", "-B", "-f", str(build / "pom.xml"), "dependency:copy-dependencies",
             f"-DoutputDirectory={build / 'libs'}"],
            capture_output=True, text=True, timeout=900, check=False,
        )
        if result.returncode != 0:
            raise KitError(
                f"mvn could not fetch Pulsar {version}:\n{(result.stdout + result.stderr)[-3000:]}"
            )
        if libs.exists():  # another process finished first
            return libs
        (build / "libs").rename(libs)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return libs


class PulsarKit(BrokerKit):
    name = "pulsar"
    port_names: ClassVar[tuple[str, ...]] = ("broker", "web")
    start_timeout = 120.0
    stop_grace = 30.0

    def __init__(self, workdir: Path | str | None = None, *, auth: bool = False,
                 max_message_size: int | None = None, heap: str = "384m") -> None:
        super().__init__(workdir)
        self.auth = auth
        self.max_message_size = max_message_size
        self.heap = heap
        self._libs: Path | None = None
        self._shim: Path | None = None

    # -- where things are --------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"pulsar://127.0.0.1:{self.ports['broker']}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['web']}"

    @property
    def secret_key_path(self) -> Path:
        return self.workdir / "auth" / "secret.key"

    # -- tokens ------------------------------------------------------------------------------

    def mint_token(self, role: str, key: bytes | None = None) -> str:
        """An HS256 token for ``role`` signed with this broker's key (or with ``key``)."""
        import jwt  # PyJWT; only the auth kit needs it

        secret = key if key is not None else self.secret_key_path.read_bytes()
        return str(jwt.encode({"sub": role}, secret, algorithm="HS256"))

    def admin_token(self) -> str:
        return self.mint_token(ADMIN_ROLE)

    def grant(self, role: str, actions: tuple[str, ...] = ("produce", "consume"),
              namespace: str = "public/default") -> None:
        """Give ``role`` permissions on a namespace (admin REST call)."""
        self._admin("POST", f"/admin/v2/namespaces/{namespace}/permissions/{role}",
                    json.dumps(list(actions)).encode())

    def _admin(self, method: str, path: str, body: bytes | None = None) -> bytes:
        request = urllib.request.Request(self.web_url + path, data=body, method=method)
        request.add_header("Content-Type", "application/json")
        if self.auth:
            request.add_header("Authorization", f"Bearer {self.admin_token()}")
        with urllib.request.urlopen(request, timeout=10) as response:
            return bytes(response.read())

    # -- BrokerKit ---------------------------------------------------------------------------

    def prepare(self) -> None:
        self._libs = server_libs()
        self._shim = loopback_shim()
        for sub in ("data", "logs"):
            (self.workdir / sub).mkdir(exist_ok=True)
        lines = [
            "clusterName=standalone",
            "bindAddress=127.0.0.1",
            "advertisedAddress=127.0.0.1",
            f"brokerServicePort={self.ports['broker']}",
            f"webServicePort={self.ports['web']}",
            "managedLedgerDefaultEnsembleSize=1",
            "managedLedgerDefaultWriteQuorum=1",
            "managedLedgerDefaultAckQuorum=1",
            "functionsWorkerEnabled=false",
            "transactionCoordinatorEnabled=false",
            "systemTopicEnabled=true",
            "topicLevelPoliciesEnabled=true",
            "allowAutoTopicCreation=true",
            "allowAutoTopicCreationType=non-partitioned",
            "brokerDeleteInactiveTopicsEnabled=false",
            "numIOThreads=2",
            "numHttpServerThreads=4",
            "numWorkerThreads=2",
            "numOrderedExecutorThreads=2",
            "managedLedgerCacheSizeMB=32",
            "bookkeeperClientExposeStatsToPrometheus=false",
            # standalone.conf is also the in-process bookie's config: its frame limit must leave
            # room for a maxMessageSize entry plus its headers (the bookie default is exactly
            # 5 MB, so a 5 MB message would be refused by the bookie and retried forever)
            f"nettyMaxFrameSizeBytes={self.frame_size}",
        ]
        if self.max_message_size is not None:
            lines.append(f"maxMessageSize={self.max_message_size}")
        if self.auth:
            lines += self._auth_lines()
        (self.workdir / "standalone.conf").write_text("\n".join(lines) + "\n")
        (self.workdir / "log4j2.xml").write_text(LOG4J2)

    @property
    def frame_size(self) -> int:
        return (self.max_message_size or DEFAULT_MAX_MESSAGE_SIZE) + FRAME_PADDING

    def _auth_lines(self) -> list[str]:
        key = self.secret_key_path
        if not key.exists():
            key.parent.mkdir(mode=0o700, exist_ok=True)
            key.write_bytes(os.urandom(32))
            key.chmod(0o600)
        admin = key.parent / "admin.token"
        admin.write_text(self.admin_token())
        admin.chmod(0o600)
        return [
            "authenticationEnabled=true",
            "authenticationProviders="
            "org.apache.pulsar.broker.authentication.AuthenticationProviderToken",
            f"tokenSecretKey=file://{key}",
            "authorizationEnabled=true",
            f"superUserRoles={ADMIN_ROLE}",
            # standalone's own admin client creates public/default at start: it must log in too
            "brokerClientAuthenticationPlugin="
            "org.apache.pulsar.client.impl.auth.AuthenticationToken",
            f"brokerClientAuthenticationParameters=file://{admin}",
        ]

    def command(self) -> list[str]:
        assert self._libs is not None and self._shim is not None, "prepare() first"
        java = _require("java", "Pulsar runs on Java 17 or newer")
        data = self.workdir / "data"
        return [
            "env", f"LD_PRELOAD={self._shim}",
            java, f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:MaxDirectMemorySize=256m",
            "-XX:+UseG1GC", *JAVA_OPENS,
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.xml'}",
            f"-Dpulsar.log.dir={self.workdir / 'logs'}",
            "-Djava.net.preferIPv4Stack=true", "-Dpulsar.allocator.exit_on_oom=true",
            "-cp", f"{self._libs}/*", "org.apache.pulsar.PulsarStandaloneStarter",
            "--config", str(self.workdir / "standalone.conf"), "-nfw", "-nss",
            "--metadata-dir", str(data / "metadata"),
            "--bookkeeper-dir", str(data / "bookkeeper"),
        ]

    def ready(self) -> bool:
        try:
            body = self._admin("GET", "/admin/v2/namespaces/public")
        except (OSError, urllib.error.URLError, ValueError):
            return False
        return b"public/default" in body

    def env(self) -> dict[str, str]:
        env = {"COZE_MQ_TYPE": "pulsar", "MQ_NAME_SERVER": self.url}
        if self.max_message_size is not None:
            env["PULSAR_MAX_MESSAGE_SIZE"] = str(self.max_message_size)
        if self.auth and self.secret_key_path.exists():
            env["PULSAR_JWT_TOKEN"] = self.admin_token()
        return env
