"""The pipeline's long-running services in one process: bridge, index stage,
apportionment stage, alert stage, drift stage, router and sink threads, plus the Flink job as a child process. Used by the demo, the
end-to-end tests and the benchmark, so all three exercise the same wiring."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import start_http_server

from alerts.engine import EngineConfig
from alerts.router import AlertRouter
from alerts.routing import Routing
from alerts.stage import AlertStage
from apportion.stage import ApportionStage
from calibration.drift_config import DriftConfig, Pair, load_drift
from calibration.drift_stage import DriftStage
from connectors.influx_sink import InfluxSink
from connectors.kafka_io import ensure_topics
from connectors.mqtt_bridge import MqttKafkaBridge
from jobs.index_stage import IndexStage
from jointwatch.settings import Settings
from jointwatch.stack.flink import start_embedded_job
from jointwatch.stack.processes import ManagedProcess
from jointwatch.stack.secrets import Secrets
from schemas.network import Network

log = logging.getLogger("jointwatch.services")


@dataclass
class Services:
    settings: Settings
    secrets: Secrets
    network: Network
    routing: Routing
    job_args: tuple[str, ...] = ("--startup-mode", "earliest-offset")
    with_job: bool = True
    metrics: bool = False  # serve Prometheus /metrics on the settings' metrics port
    alert_config: EngineConfig = EngineConfig()
    drift: tuple[DriftConfig, tuple[Pair, ...]] | None = None  # None: the calibration file's drift section
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    job: ManagedProcess | None = None
    errors: list[str] = field(default_factory=list)

    def start(self) -> "Services":
        s = self.settings
        ensure_topics(s.kafka_bootstrap, namespace=s.namespace)
        provision_calibration(s, self.network)
        if self.with_job:
            self.job = start_embedded_job(s, *self.job_args)
            log.info("Flink job starting (embedded MiniCluster), log: %s", self.job.log_file)
        self.bridge = MqttKafkaBridge(s, self.network, self.secrets, client_id=f"jw-bridge-{s.namespace or 'main'}")
        self.router = AlertRouter.create(s, self.secrets, self.routing, group_id=f"jw-alert-router-{s.namespace or 'main'}")
        self.sink = InfluxSink.create(s, self.secrets, group_id=f"jw-influx-sink-{s.namespace or 'main'}")
        self.indexer = IndexStage(s, self.network, group_id=f"jw-index-stage-{s.namespace or 'main'}")
        self.apportioner = ApportionStage(s, self.network, group_id=f"jw-apportion-stage-{s.namespace or 'main'}")
        self.alerter = AlertStage(s, self.network, group_id=f"jw-alert-stage-{s.namespace or 'main'}", config=self.alert_config)
        drift, pairs = self.drift or load_drift(s.calibration_file, self.network)
        self.drifter = DriftStage(s, self.network, drift, pairs, group_id=f"jw-drift-stage-{s.namespace or 'main'}")
        stages = (
            ("bridge", self.bridge.run), ("indices", self.indexer.run), ("apportion", self.apportioner.run),
            ("alerts", self.alerter.run), ("drift", self.drifter.run),
            ("router", self.router.run), ("sink", self.sink.run),
        )
        for name, target in stages:
            t = threading.Thread(target=self._guard(name, target), name=f"jw-{name}", daemon=True)
            t.start()
            self.threads.append(t)
        if self.metrics:
            self._metrics_server, _ = start_http_server(s.port("metrics_port"), addr="127.0.0.1")
            log.info("Prometheus metrics on http://127.0.0.1:%d/metrics", s.port("metrics_port"))
        if not self.bridge.connected.wait(15):
            raise RuntimeError("the bridge did not connect to Mosquitto within 15 s")
        return self

    def _guard(self, name: str, target: Callable[[threading.Event], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target(self.stop)
            except Exception as exc:  # a dead service must not go unnoticed: record it and stop the rest
                log.exception("%s failed", name)
                self.errors.append(f"{name}: {exc}")
                self.stop.set()

        return run

    def job_alive(self) -> bool:
        return self.job is not None and self.job.running()

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
        # Drop the Kafka clients now: librdkafka threads live as long as their objects do.
        self.bridge = self.indexer = self.apportioner = self.alerter = self.drifter = self.router = self.sink = None  # type: ignore[assignment]
        gc.collect()
        if self.job is not None:
            self.job.stop()
        if self.metrics:
            self._metrics_server.shutdown()

    def __enter__(self) -> "Services":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def provision_calibration(settings: Settings, network: Network) -> None:
    """Publish the calibration file's registry to jw.control.calibration before the job starts,
    as `jointwatch calibration apply --backdate` would: the stack is new or the versions are
    already there (then nothing is published), so no minute was calibrated by an older registry.
    A file that rewrites a published version is refused with the reasons (ChangeRefused)."""
    import time

    from calibration.control import plan_apply, sensor_message
    from calibration.control_topic import publish, read_registry
    from calibration.registry import load_registry

    current = read_registry(settings.kafka_bootstrap, settings.namespace)
    wanted = load_registry(settings.calibration_file, network)
    changes = plan_apply(wanted, current.registry, int(time.time() * 1000), backdate=True)
    if changes:
        publish(settings.kafka_bootstrap, [sensor_message(wanted.registry_id, c.sensor) for c in changes], settings.namespace)
        log.info("calibration registry %s: published %d sensor histories", settings.calibration_file, len(changes))
