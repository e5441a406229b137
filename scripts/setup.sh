#!/usr/bin/env bash
# Idempotent set-up of everything jointwatch needs on a fresh Debian machine of
# this kind (Python 3.11, Java 17, Maven, Go preinstalled): the Debian
# mosquitto package, uv and the locked Python environment, the Kafka broker and
# Flink connector jars (pom.xml), and InfluxDB 1.8.10 built with go install.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '[setup] %s\n' "$*"; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "[setup] $1 not found: $2" >&2; exit 1; }; }

need java "install OpenJDK 17 (apt-get install openjdk-17-jre-headless)"
need mvn "install Maven (apt-get install maven)"
need go "install Go >= 1.21 (https://go.dev/doc/install)"

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing mosquitto (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
    # The package's own service is not used: the stack starts its own broker.
    (service mosquitto stop || true) >/dev/null 2>&1
  else
    echo "[setup] mosquitto missing: run 'sudo apt-get install mosquitto'" >&2; exit 1
  fi
fi

if ! command -v uv >/dev/null 2>&1; then
  say "installing uv"
  python3 -m pip install --quiet uv
fi
say "syncing the Python environment (uv.lock)"
uv sync --frozen --quiet

if [ ! -f .deps/kafka/.resolved ] || [ pom.xml -nt .deps/kafka/.resolved ]; then
  say "resolving Kafka and Flink connector jars (pom.xml)"
  rm -rf .deps/kafka .deps/flink
  mvn -q -B package
  touch .deps/kafka/.resolved
fi

if [ ! -x .deps/bin/influxd ]; then
  say "building InfluxDB 1.8.10 (go install, takes a few minutes the first time)"
  GOBIN="$PWD/.deps/bin" GOFLAGS=-buildvcs=false go install github.com/influxdata/influxdb/cmd/influxd@v1.8.10
fi
say "ready"
