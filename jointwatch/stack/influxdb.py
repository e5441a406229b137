"""InfluxDB OSS 1.8.10 (built by `make setup` with go install), auth on, Flux on.

1.8 serves the v2 write API and Flux queries that influxdb-client speaks; the
token is "user:password" and the bucket is "<database>/<retention policy>".
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request

from jointwatch.settings import Settings
from jointwatch.stack.processes import StackError
from jointwatch.stack.secrets import Secrets


class InfluxDB:
    name = "influxdb"

    def __init__(self, settings: Settings, secrets: Secrets) -> None:
        self.s, self.secrets = settings, secrets
        self.dir = settings.state_dir / "influxdb"

    @property
    def ports(self) -> dict[str, int]:
        return {"influx-http": self.s.port("influx_port"), "influx-rpc": self.s.port("influx_rpc_port")}

    def check_prerequisites(self) -> None:
        if not self.s.influx_bin.exists():
            raise StackError(f"{self.s.influx_bin} missing: run `make setup` (go install github.com/influxdata/influxdb/cmd/influxd@v1.8.10)")

    def prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "influxdb.conf").write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{self.ports['influx-rpc']}"

[meta]
  dir = "{self.dir / 'meta'}"

[data]
  dir = "{self.dir / 'data'}"
  wal-dir = "{self.dir / 'wal'}"
  query-log-enabled = false

[http]
  bind-address = "127.0.0.1:{self.ports['influx-http']}"
  auth-enabled = true
  flux-enabled = true
  log-enabled = false

[monitor]
  store-enabled = false

[logging]
  level = "warn"
"""
        )

    def argv(self) -> list[str]:
        return [str(self.s.influx_bin), "run", "-config", str(self.dir / "influxdb.conf")]

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.s.influx_url}/ping", timeout=2) as resp:
                return resp.status == 204
        except (urllib.error.URLError, OSError):
            return False

    def _query(self, q: str, auth: bool = True) -> dict:
        req = urllib.request.Request(f"{self.s.influx_url}/query", data=urllib.parse.urlencode({"q": q}).encode(), method="POST")
        if auth:
            basic = base64.b64encode(f"{self.secrets.influx_user}:{self.secrets.influx_password}".encode()).decode()
            req.add_header("Authorization", f"Basic {basic}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def after_healthy(self) -> None:
        # The first admin user may be created without credentials; afterwards everything needs them.
        try:
            self._query("SHOW DATABASES")
        except urllib.error.HTTPError as exc:
            if exc.code not in (401, 403):  # 403 = "create admin user first"
                raise
            self._query(f"CREATE USER \"{self.secrets.influx_user}\" WITH PASSWORD '{self.secrets.influx_password}' WITH ALL PRIVILEGES", auth=False)
        self._query(f'CREATE DATABASE "{self.s.influx_db}"')
