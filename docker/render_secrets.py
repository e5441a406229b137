"""Generate the deployment's credentials and Mosquitto auth files (all git-ignored).

    uv run python docker/render_secrets.py [--network config/network.yaml] [--routing config/routing.yaml]

Writes, next to this file:
  secrets/secrets.yaml      every MQTT password (services, region consoles, one per station),
                            the webhook signing keys and the InfluxDB admin credentials, in the
                            format of the local stack's <state>/secrets.yaml; mounted read-only
                            into the jointwatch containers as /state/secrets.yaml
  secrets/mosquitto/passwd  the same MQTT users, hashed with `mosquitto_passwd -U`
  secrets/mosquitto/acl     who may read/write which topic (jointwatch.stack.mosquitto.acl_text)
  .env                      only if missing: the values docker-compose.yml needs (see .env.example)

Running it again keeps existing secrets and adds what new stations or responders need
(the same rule as `jointwatch stack up`); then restart mosquitto to load the new files.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets as _random
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from alerts.routing import load_routing  # noqa: E402
from jointwatch.settings import REPO_ROOT  # noqa: E402
from jointwatch.stack.mosquitto import acl_text  # noqa: E402
from jointwatch.stack.secrets import SERVICE_USERS, console_user, ensure_secrets  # noqa: E402
from schemas.errors import ConfigError  # noqa: E402
from schemas.network import load_network  # noqa: E402


def hash_passwords(passwd: Path) -> None:
    tool = shutil.which("mosquitto_passwd") or ("/usr/bin/mosquitto_passwd" if Path("/usr/bin/mosquitto_passwd").exists() else None)
    if tool:
        subprocess.run([tool, "-U", str(passwd)], check=True)
    elif shutil.which("docker"):
        subprocess.run(
            ["docker", "run", "--rm", "--user", f"{os.getuid()}:{os.getgid()}", "-v", f"{passwd.parent}:/work",
             "eclipse-mosquitto:2", "mosquitto_passwd", "-U", "/work/passwd"],
            check=True,
        )
    else:
        passwd.unlink()
        raise SystemExit("mosquitto_passwd not found and no docker: install the mosquitto package (it provides mosquitto_passwd)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--network", type=Path, default=REPO_ROOT / "config" / "network.yaml")
    p.add_argument("--routing", type=Path, default=REPO_ROOT / "config" / "routing.yaml")
    p.add_argument("--out", type=Path, default=HERE, help="directory that gets secrets/ and .env (default: docker/)")
    args = p.parse_args()
    try:
        network = load_network(args.network)
        routing = load_routing(args.routing, network.regions)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None

    # The same users and keys the local stack provisions (jointwatch.stack.local.LocalStack).
    users = [*SERVICE_USERS, *(console_user(r) for r in network.regions), *network.stations]
    secrets = ensure_secrets(args.out / "secrets" / "secrets.yaml", users, routing.secret_refs())

    mosq = args.out / "secrets" / "mosquitto"
    mosq.mkdir(parents=True, exist_ok=True)
    passwd = mosq / "passwd"
    passwd.unlink(missing_ok=True)
    passwd.touch(mode=0o600)
    passwd.write_text("".join(f"{u}:{secrets.mqtt_password(u)}\n" for u in users))
    hash_passwords(passwd)
    acl = mosq / "acl"
    acl.unlink(missing_ok=True)
    acl.touch(mode=0o600)
    acl.write_text(acl_text(network) + "\n")

    env = args.out / ".env"
    if not env.exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        env.touch(mode=0o600)
        env.write_text(
            f"KAFKA_CLUSTER_ID={cluster_id}\n"
            f"INFLUXDB_ADMIN_USER={secrets.influx_user}\n"
            f"INFLUXDB_ADMIN_PASSWORD={secrets.influx_password}\n"
            f"INFLUXDB_ADMIN_TOKEN={secrets.influx_user}:{secrets.influx_password}\n"
            f"GRAFANA_ADMIN_PASSWORD={_random.token_urlsafe(18)}\n"
            f"JW_UID={os.getuid()}\n"
            f"JW_GID={os.getgid()}\n"
        )
    print(f"wrote {args.out / 'secrets'} ({len(users)} MQTT users, {len(secrets.webhook)} webhook keys); env file: {env}")


if __name__ == "__main__":
    main()
