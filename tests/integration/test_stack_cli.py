"""`jointwatch stack up/status/down` as a user runs them: the installed command in
child processes, real Mosquitto, Kafka and InfluxDB, a private state directory
and port base (not the session `stack` fixture's).

Error paths must end with exit code != 0 and one line saying what to do, never a
traceback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jointwatch.settings import PORT_OFFSETS

pytestmark = pytest.mark.integration

PORT_BASE = 26500  # clear of the demo (17000) and of the session fixture (24000)
MQTT_PORT = PORT_BASE + PORT_OFFSETS["mqtt_port"]
SERVICES = ("mosquitto", "kafka", "influxdb")
JOINTWATCH = Path(sys.executable).parent / "jointwatch"  # the console script of this venv


def jw(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("JW_STATE_DIR", "JW_PORT_BASE")}
    return subprocess.run([str(JOINTWATCH), *args], capture_output=True, text=True, timeout=timeout, env=env)


def stack_cmd(action: str, state_dir: Path, *extra: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return jw("stack", action, "--state-dir", str(state_dir), "--port-base", str(PORT_BASE), *extra, timeout=timeout)


def processes_mentioning(marker: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains `marker` (zombies have an empty one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append((int(entry.name), cmdline.strip()))
    return found


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def assert_one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, describe(result)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, describe(result)
    lines = error_lines(result)
    assert len(lines) == 1, f"expected exactly one line on stderr:\n{describe(result)}"
    assert lines[0].startswith("Error: "), describe(result)
    return lines[0]


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "state"
    assert JOINTWATCH.exists(), f"{JOINTWATCH} missing: the project is not installed in this venv (uv sync)"
    try:
        yield state
    finally:
        down = stack_cmd("down", state, timeout=120)
        assert down.returncode == 0, describe(down)


def test_up_is_idempotent_status_reports_health_and_down_leaves_no_process(state_dir: Path) -> None:
    up = stack_cmd("up", state_dir)
    assert up.returncode == 0, describe(up)
    assert "Traceback" not in up.stderr, describe(up)

    status = stack_cmd("status", state_dir, timeout=60)
    assert status.returncode == 0, describe(status)
    rows = {line.split()[0]: line for line in status.stdout.splitlines() if line.strip()}
    for name in SERVICES:
        assert name in rows and " healthy " in f"{rows[name]} ", f"{name} not healthy:\n{describe(status)}"
        assert "pid=-" not in rows[name], describe(status)
    assert f"mqtt={MQTT_PORT}" in rows["mosquitto"], describe(status)
    assert f"kafka={PORT_BASE + PORT_OFFSETS['kafka_port']}" in rows["kafka"], describe(status)
    assert f"influx-http={PORT_BASE + PORT_OFFSETS['influx_port']}" in rows["influxdb"], describe(status)
    pids = {name: rows[name].split("pid=")[1].split()[0] for name in SERVICES}
    assert len(processes_mentioning(str(state_dir))) >= len(SERVICES)

    # A second `up` starts nothing new and succeeds.
    again = stack_cmd("up", state_dir)
    assert again.returncode == 0, describe(again)
    assert "started" not in again.stderr, f"second `up` started something:\n{describe(again)}"
    status2 = stack_cmd("status", state_dir, timeout=60)
    assert status2.returncode == 0, describe(status2)
    rows2 = {line.split()[0]: line for line in status2.stdout.splitlines() if line.strip()}
    assert {name: rows2[name].split("pid=")[1].split()[0] for name in SERVICES} == pids, "pids changed on the second `up`"

    down = stack_cmd("down", state_dir, timeout=120)
    assert down.returncode == 0, describe(down)
    for name in SERVICES:
        assert name in down.stdout, describe(down)
    left = processes_mentioning(str(state_dir))
    assert not left, f"processes left after `stack down`: {left}"

    after = stack_cmd("status", state_dir, timeout=60)
    assert after.returncode == 1, describe(after)
    assert "Traceback" not in after.stderr, describe(after)
    assert all("stopped" in line for line in after.stdout.splitlines() if line.split()[:1] and line.split()[0] in SERVICES), describe(after)

    # `down` with nothing running is fine too.
    down2 = stack_cmd("down", state_dir, timeout=60)
    assert down2.returncode == 0, describe(down2)
    assert "nothing was running" in down2.stdout, describe(down2)


def test_taken_port_fails_with_one_line_naming_the_port(state_dir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        # REUSEADDR only so that TIME_WAIT leftovers of an earlier test don't stop *us*; a listening
        # socket still makes the port unavailable to anybody else.
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", MQTT_PORT))
        blocker.listen()
        result = stack_cmd("up", state_dir)
    line = assert_one_line_error(result)
    assert str(MQTT_PORT) in line, line
    assert "--port-base" in line, f"the message should say what to do: {line}"
    assert not processes_mentioning(str(state_dir)), "a service was started although a port was taken"


def test_missing_prerequisite_points_to_make_setup(state_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text("influx_bin: /nonexistent/influxd\n")
    result = stack_cmd("up", state_dir, "--config", str(config))
    line = assert_one_line_error(result)
    assert "make setup" in line, line
    assert "/nonexistent/influxd" in line, line
    assert not processes_mentioning(str(state_dir)), "a service was started although a prerequisite is missing"


def test_bad_config_file_names_the_file_and_the_key(state_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "bad-settings.yaml"
    config.write_text("port_base: 26500\nkafka_heapsize: 1g\n")
    for action in ("up", "status", "down"):
        result = stack_cmd(action, state_dir, "--config", str(config), timeout=60)
        line = assert_one_line_error(result)
        assert str(config) in line and "kafka_heapsize" in line, f"{action}: {line}"
    assert not processes_mentioning(str(state_dir))


# Known product bugs (reported to the lead): these error paths still end in a traceback.
# strict=True: once fixed, the XPASS fails and the marker must go.


def test_unusable_state_dir_fails_with_one_line() -> None:
    result = jw("stack", "status", "--state-dir", "/proc/jointwatch-cannot-exist", "--port-base", str(PORT_BASE), timeout=60)
    line = assert_one_line_error(result)
    assert "/proc/jointwatch-cannot-exist" in line, line


def test_corrupt_secrets_file_fails_naming_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "secrets.yaml").write_text("mqtt: [\n")
    result = jw("stack", "status", "--state-dir", str(state), "--port-base", str(PORT_BASE), timeout=60)
    line = assert_one_line_error(result)
    assert str(state / "secrets.yaml") in line, line
