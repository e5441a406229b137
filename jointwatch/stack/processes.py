"""Child processes of the local stack: start with a pid file, stop without orphans.

Each service runs in its own process group with its output in
<state>/logs/<name>.log. A pid file records the pid and the group so `down`
from another shell can stop exactly what `up` started (the command line is
checked, so a recycled pid is never signalled).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class StackError(RuntimeError):
    """A problem the user can fix; the message is one line saying what to do."""


def _die_with_parent() -> None:
    # Foreground runs (demo, tests): the kernel sends SIGTERM to the child if we die,
    # so a killed demo leaves no orphan broker behind.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class ManagedProcess:
    name: str
    pid_file: Path
    log_file: Path
    marker: str  # a string that must be on the process's command line (the state dir)

    def start(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, tied: bool = False) -> int:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent if tied else None,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return None
        if self.marker not in cmdline or stat.rsplit(")", 1)[1].split()[0] == "Z":
            return None  # recycled pid, or a zombie of ours
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def stop(self, timeout: float = 20.0) -> bool:
        """SIGTERM the process group, SIGKILL after timeout. True if something was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid() is not None:
            _reap(pid)
            time.sleep(0.1)
        if self.pid() is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            time.sleep(0.2)
        _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child (started by another `jointwatch stack up`)
