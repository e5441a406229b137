"""Apache Kafka, KRaft single node (broker + controller in one JVM), jars from the pom."""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid

from confluent_kafka.admin import AdminClient
from confluent_kafka import KafkaException

from jointwatch.settings import Settings
from jointwatch.stack.processes import StackError

LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.server.name = kafka.server.KafkaServer
logger.server.level = INFO
"""


class Kafka:
    name = "kafka"

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.dir = settings.state_dir / "kafka"
        self.libs = settings.deps_dir / "kafka"

    @property
    def ports(self) -> dict[str, int]:
        return {"kafka": self.s.port("kafka_port"), "kafka-controller": self.s.port("kafka_controller_port")}

    def check_prerequisites(self) -> None:
        if not shutil.which("java"):
            raise StackError("java not found: install OpenJDK 17 (Debian: openjdk-17-jre-headless)")
        if not any(self.libs.glob("kafka_2.13-*.jar")):
            raise StackError(f"Kafka jars missing in {self.libs}: run `make setup` (mvn resolves them from pom.xml)")

    def _java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        return [
            shutil.which("java") or "java",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        port, cport = self.ports["kafka"], self.ports["kafka-controller"]
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{cport}",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.dir / "data"),
            "num.partitions": "4",
            "auto.create.topics.enable": "false",  # topics come from schemas/topics.py only
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
        }
        (self.dir / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.dir / "log4j2.properties").write_text(LOG4J2)
        if not (self.dir / "data" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            out = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.dir / "server.properties")),
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                raise StackError(f"formatting Kafka storage failed: {(out.stderr or out.stdout).strip().splitlines()[-1:]}")

    def argv(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.dir / "server.properties"), heap=self.s.kafka_heap)

    def healthy(self) -> bool:
        try:
            md = AdminClient({"bootstrap.servers": self.s.kafka_bootstrap, "socket.timeout.ms": 2000, "log_level": 0}).list_topics(timeout=2)
            return bool(md.brokers)
        except KafkaException:
            return False

    def after_healthy(self) -> None:
        from connectors.kafka_io import ensure_topics

        ensure_topics(self.s.kafka_bootstrap, namespace=self.s.namespace)
