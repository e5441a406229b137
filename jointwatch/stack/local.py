"""The local stack: Mosquitto, Kafka and InfluxDB as supervised child processes.

`up` checks prerequisites and ports, writes configs, starts what is not running,
and returns only when every service answers its health check. `down` stops them
all (process groups, SIGTERM then SIGKILL). Everything lives in one state dir.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from alerts.routing import load_routing
from jointwatch.settings import Settings
from jointwatch.stack.influxdb import InfluxDB
from jointwatch.stack.kafka import Kafka
from jointwatch.stack.mosquitto import Mosquitto
from jointwatch.stack.processes import ManagedProcess, StackError, port_free
from jointwatch.stack.secrets import SERVICE_USERS, Secrets, console_user, ensure_secrets
from schemas.network import Network, load_network

log = logging.getLogger("jointwatch.stack")


class Service(Protocol):
    name: str

    @property
    def ports(self) -> dict[str, int]: ...
    def check_prerequisites(self) -> None: ...
    def prepare(self) -> None: ...
    def argv(self) -> list[str]: ...
    def healthy(self) -> bool: ...
    def after_healthy(self) -> None: ...


@dataclass
class ServiceStatus:
    name: str
    pid: int | None
    healthy: bool
    ports: dict[str, int]


class LocalStack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.network: Network = load_network(settings.network_file)
        routing = load_routing(settings.routing_file, self.network.regions)
        users = [*SERVICE_USERS, *(console_user(r) for r in self.network.regions), *self.network.stations]
        # Every service, console, device and webhook responder gets its secret here, once.
        self.secrets: Secrets = ensure_secrets(settings.secrets_file, users, routing.secret_refs())
        self.services: list[Service] = [
            Mosquitto(settings, self.network, self.secrets),
            Kafka(settings),
            InfluxDB(settings, self.secrets),
        ]

    def process(self, service: Service) -> ManagedProcess:
        run = self.settings.state_dir / "run"
        return ManagedProcess(service.name, run / f"{service.name}.pid", self.settings.state_dir / "logs" / f"{service.name}.log", str(self.settings.state_dir))

    def up(self, tied: bool = False, timeout: float = 90.0) -> None:
        """Start every service not yet running; `tied` children die with this process."""
        for svc in self.services:
            svc.check_prerequisites()
        pending = [svc for svc in self.services if not self.process(svc).running()]
        for svc in pending:
            for label, port in svc.ports.items():
                if not port_free(port):
                    raise StackError(
                        f"port {port} ({label}) on 127.0.0.1 is taken: stop what listens there (ss -ltnp 'sport = :{port}') "
                        f"or pick another --port-base (now {self.settings.port_base})"
                    )
        for svc in pending:
            svc.prepare()
            pid = self.process(svc).start(svc.argv(), tied=tied)
            log.info("started %s (pid %d) on %s", svc.name, pid, svc.ports)
        for svc in self.services:
            self._wait_healthy(svc, timeout)
            svc.after_healthy()
            log.info("%s healthy", svc.name)

    def _wait_healthy(self, svc: Service, timeout: float) -> None:
        proc = self.process(svc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if svc.healthy():
                return
            if not proc.running():
                raise StackError(f"{svc.name} exited during start-up; its log {proc.log_file} ends with:\n{proc.tail()}")
            time.sleep(0.3)
        raise StackError(f"{svc.name} not healthy after {timeout:.0f}s; see {proc.log_file}:\n{proc.tail()}")

    def down(self) -> list[str]:
        stopped = []
        for svc in reversed(self.services):
            if self.process(svc).stop():
                stopped.append(svc.name)
                log.info("stopped %s", svc.name)
        return stopped

    def status(self) -> list[ServiceStatus]:
        out = []
        for svc in self.services:
            pid = self.process(svc).pid()
            out.append(ServiceStatus(svc.name, pid, pid is not None and svc.healthy(), svc.ports))
        return out

    def __enter__(self) -> "LocalStack":
        self.up(tied=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

