"""Apache Kafka 4.4.0 as one local KRaft process (broker and controller in one JVM), on loopback.

The jars come from Maven Central through ``mvn dependency:copy-dependencies`` on a tiny pom the
kit writes, and are cached under ``CACHE_DIR/kafka/<version>/libs`` (prepared in a temporary
directory, then renamed, so a half-finished download is never used). Ports and data stay the
same across restarts: ``server.properties`` is written once per work directory and the storage is
formatted once (the controller's address is recorded at format time).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from cozemq.kit import CACHE_DIR, BrokerKit, KitError, log_tail

KAFKA_VERSION = "4.4.0"
LOG4J_VERSION = "2.25.5"
"""Kafka 4.4 logs through slf4j 1.7, so it needs log4j2's slf4j-1.x binding (log4j-slf4j-impl)."""

HEAP = ("-Xms256m", "-Xmx512m")

POM = f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 http://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.cozemq</groupId>
  <artifactId>cozemq-kafka-kit</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""

LOG4J2 = """\
# Everything to stderr (the kit sends it to broker.log); stdout stays clean for tool output.
status = warn
appender.console.type = Console
appender.console.name = CONSOLE
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = CONSOLE
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
"""

INTERNAL_USER = "cozemq-broker"
"""With SCRAM on, the broker's own (inter-broker) user, created at format time."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for the kit's SSL listener.

    ``cert_file`` and ``key_file`` are the broker's certificate (chain) and its unencrypted
    PKCS#8 key; ``ca_file`` is the CA clients trust for it. With ``client_ca_file`` the listener
    requires a client certificate signed by that CA (``ssl.client.auth=required``).
    ``client_cert_file`` and ``client_key_file`` are what ``tls_env()`` hands a client.
    """

    ca_file: Path
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None


def libs_dir() -> Path:
    """The Kafka server jars, fetched from Maven Central on first use and cached."""
    target = CACHE_DIR / "kafka" / KAFKA_VERSION / "libs"
    if (target / f"kafka_2.13-{KAFKA_VERSION}.jar").exists() and (
        target / f"log4j-slf4j-impl-{LOG4J_VERSION}.jar"
    ).exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KitError("the kafka kit needs Maven (mvn) to fetch the Kafka jars from Maven Central")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="libs-", dir=target.parent) as tmp:
        work = Path(tmp)
        (work / "pom.xml").write_text(POM)
        out = work / "libs"
        result = subprocess.run(
            [mvn, "-q", "-B", "dependency:copy-dependencies", "-DincludeScope=runtime",
             f"-DoutputDirectory={out}"],
            cwd=work, capture_output=True, text=True, timeout=900, check=False,
        )
        if result.returncode != 0 or not (out / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
            raise KitError(
                f"mvn could not fetch kafka_2.13:{KAFKA_VERSION} (exit {result.returncode}):\n"
                + (result.stdout + result.stderr)[-3000:]
            )
        if target.exists():  # a partial directory from an older, non-atomic fetch
            shutil.rmtree(target)
        out.rename(target)
    return target


def new_cluster_id() -> str:
    """What `kafka-storage random-uuid` prints: a UUID, URL-safe base64 without padding."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


class KafkaKit(BrokerKit):
    """A single-node KRaft Kafka.

    ``scram_users`` (name -> password, created at format time) adds a SASL_PLAINTEXT listener
    with SCRAM-SHA-256 on its own port (``sasl_env()``); with ``plaintext=False`` it is the only
    client listener and ``env()`` carries the first user's credentials. ``tls`` adds an SSL
    listener on its own port (``tls_env()``), mutual TLS when it names a client CA; the other
    listeners are unchanged.
    """

    name = "kafka"
    port_names: ClassVar[tuple[str, ...]] = ("client", "controller", "sasl", "ssl")
    start_timeout = 90.0
    stop_grace = 15.0

    def __init__(self, workdir: Path | str | None = None, *,
                 scram_users: Mapping[str, str] | None = None,
                 plaintext: bool = True,
                 tls: TlsFiles | None = None,
                 client_env: Mapping[str, str] | None = None) -> None:
        super().__init__(workdir)
        self.tls = tls
        self.scram_users = dict(scram_users or {})
        self.plaintext = plaintext or not self.scram_users
        self.client_env = dict(client_env or {})

    @property
    def _internal_password(self) -> str:
        """The broker's own SCRAM password, kept with the data so restarts reuse it."""
        path = self.workdir / "internal-password"
        if not path.exists():
            path.write_text(secrets.token_hex(16))
            path.chmod(0o600)
        return path.read_text().strip()

    # -- files --------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports['client']}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def _properties(self) -> str:
        client, controller = self.ports["client"], self.ports["controller"]
        if not self.scram_users:
            listeners = {"PLAINTEXT": client}
        elif self.plaintext:
            listeners = {"PLAINTEXT": client, "SASL_PLAINTEXT": self.ports["sasl"]}
        else:
            listeners = {"SASL_PLAINTEXT": client}
        if self.tls is not None:
            listeners["SSL"] = self.ports["ssl"]
        inter = "PLAINTEXT" if "PLAINTEXT" in listeners else "SASL_PLAINTEXT"
        addresses = ",".join(f"{name}://127.0.0.1:{port}" for name, port in listeners.items())
        protocols = ",".join(f"{name}:{name}" for name in listeners)
        lines = [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers=127.0.0.1:{controller}",
            f"listeners={addresses},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners={addresses},CONTROLLER://127.0.0.1:{controller}",
            "controller.listener.names=CONTROLLER",
            f"inter.broker.listener.name={inter}",
            f"listener.security.protocol.map={protocols},CONTROLLER:PLAINTEXT",
            f"log.dirs={self.data_dir}",
            "num.partitions=1",
            "default.replication.factor=1",
            "min.insync.replicas=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "share.coordinator.state.topic.num.partitions=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            # Re-registration after a SIGKILL waits for the old session to expire (default 9 s).
            "broker.session.timeout.ms=3000",
            "broker.heartbeat.interval.ms=500",
        ]
        if self.scram_users:
            lines += [
                "sasl.enabled.mechanisms=SCRAM-SHA-256",
                "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256",
                "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{INTERNAL_USER}" password="{self._internal_password}";',
            ]
        if self.tls is not None:
            lines += self._ssl_lines(self.tls)
        return "\n".join(lines) + "\n"

    @property
    def keystore_path(self) -> Path:
        return self.workdir / "tls-keystore.pem"

    def _ssl_lines(self, tls: TlsFiles) -> list[str]:
        """The SSL listener's PEM key store and, for mutual TLS, its trust store."""
        prefix = "listener.name.ssl.ssl."
        lines = [f"{prefix}keystore.type=PEM", f"{prefix}keystore.location={self.keystore_path}"]
        if tls.client_ca_file is not None:
            lines += [f"{prefix}truststore.type=PEM",
                      f"{prefix}truststore.location={tls.client_ca_file}",
                      f"{prefix}client.auth=required"]
        return lines

    def _write_keystore(self, tls: TlsFiles) -> None:
        """Kafka's PEM key store is one file: the private key, then the certificate chain."""
        self.keystore_path.write_text(tls.key_file.read_text() + tls.cert_file.read_text())
        self.keystore_path.chmod(0o600)

    def _java(self, main: str, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise KitError("the kafka kit needs a Java runtime (java 17+) on PATH")
        return [
            java, *HEAP, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp", f"{libs_dir()}/*", main, *args,
        ]

    def prepare(self) -> None:
        libs_dir()
        (self.workdir / "log4j2.properties").write_text(LOG4J2)
        if self.tls is not None:
            self._write_keystore(self.tls)
        if not self.config_path.exists():
            self.config_path.write_text(self._properties())
        if (self.data_dir / "meta.properties").exists():
            return
        scram: list[str] = []
        if self.scram_users:
            users = {INTERNAL_USER: self._internal_password, **self.scram_users}
            for user, password in users.items():
                scram += ["--add-scram", f"SCRAM-SHA-256=[name={user},password={password}]"]
        command = self._java("kafka.tools.StorageTool", "format", "-t", new_cluster_id(),
                             "-c", str(self.config_path), "--standalone", *scram)
        with self.log_path.open("ab") as log:
            result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, timeout=120, check=False)
        if result.returncode != 0:
            raise KitError(f"kafka storage format failed (exit {result.returncode}); last lines "
                           f"of {self.log_path}:\n" + log_tail(self.log_path))

    def command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config_path))

    # -- readiness ------------------------------------------------------------------------------

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.ports["client"]), timeout=0.5):
                pass
        except OSError:
            return False
        # A real admin request, on a loop of its own (ready() may be called from any thread).
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, self._list_topics()).result()

    async def _list_topics(self) -> bool:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000,
                                    **self._client_security())
        try:
            await asyncio.wait_for(admin.start(), 5)
            await asyncio.wait_for(admin.list_topics(), 5)
            return True
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    def _client_security(self) -> dict[str, str]:
        if self.plaintext:
            return {}
        return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
                "sasl_plain_username": INTERNAL_USER,
                "sasl_plain_password": self._internal_password}

    def env(self) -> dict[str, str]:
        env = {"COZE_MQ_TYPE": "kafka", "MQ_NAME_SERVER": self.bootstrap}
        if not self.plaintext:
            env.update(self._sasl_credentials())
        return {**env, **self.client_env}

    def sasl_env(self, user: str | None = None) -> dict[str, str]:
        """The environment for the SASL/SCRAM-SHA-256 listener, as ``user`` (default: the first)."""
        if not self.scram_users:
            raise KitError("this kafka kit was started without scram_users")
        port = self.ports["sasl"] if self.plaintext else self.ports["client"]
        return {"COZE_MQ_TYPE": "kafka", "MQ_NAME_SERVER": f"127.0.0.1:{port}",
                **self._sasl_credentials(user)}

    def _sasl_credentials(self, user: str | None = None) -> dict[str, str]:
        name = user or next(iter(self.scram_users))
        return {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                "KAFKA_SASL_USERNAME": name, "KAFKA_SASL_PASSWORD": self.scram_users[name]}

    def tls_env(self) -> dict[str, str]:
        """The environment for the SSL listener: the CA and, for mutual TLS, the client's pair."""
        if self.tls is None:
            raise KitError("this kafka kit was started without tls")
        env = {"COZE_MQ_TYPE": "kafka", "MQ_NAME_SERVER": f"127.0.0.1:{self.ports['ssl']}",
               "KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_TLS_CA_FILE": str(self.tls.ca_file)}
        if self.tls.client_cert_file is not None:
            env["KAFKA_TLS_CERT_FILE"] = str(self.tls.client_cert_file)
        if self.tls.client_key_file is not None:
            env["KAFKA_TLS_KEY_FILE"] = str(self.tls.client_key_file)
        return env
