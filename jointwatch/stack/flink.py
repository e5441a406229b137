"""Running the Flink job: embedded (MiniCluster in a child process) or on a
standalone JobManager + TaskManager started from the PyFlink distribution's own
scripts, on loopback, with config and logs in the state directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyflink
import yaml

from jointwatch.settings import REPO_ROOT, Settings
from jointwatch.stack.processes import ManagedProcess, StackError, port_free

FLINK_HOME = Path(pyflink.__file__).resolve().parent
JOB_SCRIPT = REPO_ROOT / "jobs" / "pipeline.py"


def job_args(settings: Settings, *extra: str) -> list[str]:
    return [
        "--bootstrap", settings.kafka_bootstrap,
        "--namespace", settings.namespace,
        "--deps-dir", str(settings.deps_dir),
        "--alignment", str(settings.alignment_file),
        "--network", str(settings.network_file),
        "--checkpoint-dir", str(settings.state_dir / "checkpoints" / (settings.namespace or "default")),
        *extra,
    ]


def _env(settings: Settings, heap: str = "1g") -> dict[str, str]:
    env = dict(os.environ)
    log_dir = settings.state_dir / "logs" / "flink"
    log_dir.mkdir(parents=True, exist_ok=True)
    env["FLINK_LOG_DIR"] = str(log_dir)  # else logs land in site-packages
    env["JVM_ARGS"] = f"-Xmx{heap}"  # the client / MiniCluster JVM has no heap limit by default
    # Python workers and the job script must find this venv's python and the repo's packages.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{REPO_ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep)
    return env


def start_embedded_job(settings: Settings, *extra: str, tied: bool = True) -> ManagedProcess:
    """The job on an embedded MiniCluster, as a supervised child process (logs in <state>/logs/job-<ns>.log)."""
    name = f"job-{settings.namespace or 'default'}"
    proc = ManagedProcess(name, settings.state_dir / "run" / f"{name}.pid", settings.state_dir / "logs" / f"{name}.log", str(settings.state_dir))
    proc.start([sys.executable, "-m", "jobs.pipeline", *job_args(settings, *extra)], env=_env(settings), cwd=REPO_ROOT, tied=tied)
    return proc


class FlinkCluster:
    """A standalone session cluster: one JobManager, one TaskManager, foreground children."""

    def __init__(self, settings: Settings, slots: int = 2) -> None:
        self.s = settings
        self.conf_dir = settings.state_dir / "flink-conf"
        self.slots = slots
        run, logs = settings.state_dir / "run", settings.state_dir / "logs"
        # Flink's temporary files go to the state directory, passed as a dynamic property on the launcher's
        # command line, which hands it to the JVM it execs: so it is on both command lines (the marker).
        self.tmp_dir = settings.state_dir / "flink-tmp"
        marker = str(self.tmp_dir)
        self.jobmanager = ManagedProcess("flink-jobmanager", run / "flink-jm.pid", logs / "flink-jobmanager.out", marker)
        self.taskmanager = ManagedProcess("flink-taskmanager", run / "flink-tm.pid", logs / "flink-taskmanager.out", marker)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.s.port('flink_rest_port')}"

    def _write_config(self) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        conf = {
            "jobmanager": {"rpc": {"address": "127.0.0.1", "port": self.s.port("flink_rpc_port")}, "bind-host": "127.0.0.1", "memory": {"process": {"size": "1024m"}}},
            "taskmanager": {"host": "127.0.0.1", "bind-host": "127.0.0.1", "numberOfTaskSlots": self.slots, "memory": {"process": {"size": "1728m"}}},
            "rest": {"address": "127.0.0.1", "bind-address": "127.0.0.1", "port": self.s.port("flink_rest_port")},
            "parallelism": {"default": 1},
            "python": {"executable": sys.executable, "client": {"executable": sys.executable}},
            "execution": {"checkpointing": {"dir": (self.s.state_dir / "checkpoints").as_uri()}},
        }
        # Start from the distribution's own config: it carries the JVM --add-opens Java 17 needs.
        base = yaml.safe_load((FLINK_HOME / "conf" / "config.yaml").read_text()) or {}
        (self.conf_dir / "config.yaml").write_text(yaml.safe_dump(_merge(base, conf)))
        for f in ("log4j.properties", "log4j-console.properties", "log4j-cli.properties"):
            src = FLINK_HOME / "conf" / f
            if src.exists():
                (self.conf_dir / f).write_text(src.read_text())

    def _lib_dir(self) -> Path:
        """The distribution's lib/ plus opt/flink-python: the job's calibration UDF (a pandas UDF)
        runs in Flink's Python operators, which the JobManager and TaskManagers must load (the
        embedded MiniCluster has them on its classpath already). Links, in the state directory:
        the installed distribution stays untouched."""
        lib = self.s.state_dir / "flink-lib"
        lib.mkdir(parents=True, exist_ok=True)
        for jar in [*(FLINK_HOME / "lib").glob("*.jar"), *(FLINK_HOME / "opt").glob("flink-python-*.jar")]:
            link = lib / jar.name
            if not link.exists():
                link.symlink_to(jar)
        return lib

    def _env(self) -> dict[str, str]:
        env = _env(self.s)
        env.pop("JVM_ARGS")
        env["FLINK_CONF_DIR"] = str(self.conf_dir)
        env["FLINK_HOME"] = str(FLINK_HOME)
        env["FLINK_LIB_DIR"] = str(self._lib_dir())
        return env

    def start(self, timeout: float = 90.0) -> None:
        for port in (self.s.port("flink_rest_port"), self.s.port("flink_rpc_port")):
            if not port_free(port):
                raise StackError(f"port {port} (flink) on 127.0.0.1 is taken: stop what listens there or pick another --port-base")
        self._write_config()
        bin_dir = FLINK_HOME / "bin"
        for f in bin_dir.iterdir():
            f.chmod(f.stat().st_mode | 0o111)  # wheels may drop the exec bit
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = ["-D", f"io.tmp.dirs={self.tmp_dir}"]
        self.jobmanager.start(["bash", str(bin_dir / "jobmanager.sh"), "start-foreground", *tmp], env=self._env(), tied=True)
        self.taskmanager.start(["bash", str(bin_dir / "taskmanager.sh"), "start-foreground", *tmp], env=self._env(), tied=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self._get("/taskmanagers")["taskmanagers"]:
                    return
            except (urllib.error.URLError, OSError, KeyError, ValueError):
                pass
            for p in (self.jobmanager, self.taskmanager):
                if not p.running():
                    raise StackError(f"{p.name} exited during start-up; see {p.log_file}:\n{p.tail()}")
            time.sleep(0.5)
        raise StackError(f"Flink cluster not ready after {timeout:.0f}s; see {self.jobmanager.log_file}")

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(self.rest_url + path, timeout=3) as resp:
            return json.loads(resp.read())

    def submit(self, *extra: str) -> str:
        """`flink run` the job script detached; returns the Flink job id."""
        out = subprocess.run(
            ["bash", str(FLINK_HOME / "bin" / "flink"), "run", "-d", "-m", f"127.0.0.1:{self.s.port('flink_rest_port')}",
             "-py", str(JOB_SCRIPT), "-pyclientexec", sys.executable, "-pyexec", sys.executable,
             *job_args(self.s, "--detached", *extra)],
            env=self._env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        )
        if out.returncode != 0:
            raise StackError(f"flink run failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        jobs = self._get("/jobs")["jobs"]
        running = [j["id"] for j in jobs if j["status"] in ("RUNNING", "CREATED", "INITIALIZING")]
        if not running:
            raise StackError(f"flink run returned but no job is running: {jobs}\n{out.stdout[-2000:]}")
        return running[0]

    def job_status(self, job_id: str) -> str:
        return self._get(f"/jobs/{job_id}")["state"]

    def stop(self) -> None:
        for p in (self.taskmanager, self.jobmanager):
            p.stop()

    def __enter__(self) -> "FlinkCluster":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
