"""Prefect's ephemeral server, started before Prefect is even imported, so the two start-ups overlap.

Without PREFECT_API_URL, Prefect starts a temporary server the moment a flow first
talks to the API: our process imports Prefect and the server module (~7 s here), and
only then the server process imports it all again and starts (~7 s more). Starting
that same server process (same command, same settings, same database in
PREFECT_HOME) first and pointing PREFECT_API_URL at it runs the two in parallel. It
dies with us: on exit, and via PR_SET_PDEATHSIG even after a kill -9. It asks for a
password made for this run (basic auth) and creates its files owner-only.

This copies a recipe Prefect keeps private (its app factory, its PREFECT__SERVER_*
settings), which a Prefect release may change: `catalog run` then falls back to
Prefect's own ephemeral mode (slower, but Prefect's to keep working).
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
# Prefect's private launch recipe for its temporary server (prefect/server/api/server.py).
APP = "prefect.server.api.server:create_app"
PRIVATE_SETTINGS = {"PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}


def _start_child() -> None:  # runs in the child between fork and exec
    os.umask(0o077)  # the files the server creates (its database, -wal, -shm) are owner-only
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class EphemeralServer:
    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        import importlib.util

        prefect_dir = Path(importlib.util.find_spec("prefect").origin).parent
        # Other local users can reach a loopback port too: the API asks for a password made for this run.
        self.auth_string = f"catalog:{secrets.token_urlsafe(24)}"
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", **PRIVATE_SETTINGS,
               "PREFECT_SERVER_API_AUTH_STRING": self.auth_string}
        env.pop("PREFECT_API_URL", None)
        self._errors = tempfile.TemporaryFile()  # what it says before failing, for our one-line note
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect_dir.parent), "--factory",
             APP, "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "error", "--lifespan", "on", "--timeout-graceful-shutdown", "1"],
            env=env, stdin=subprocess.DEVNULL, stderr=self._errors,
            preexec_fn=_start_child if sys.platform == "linux" else None)

    def wait_until_ready(self, timeout: float) -> None:
        """Block until the API answers; RuntimeError with a clear message (its last error line,
        if it wrote one) if it never does."""
        try:
            wait_for_prefect(self.api_url, timeout, self.process, what="Prefect's temporary server")
        except RuntimeError as exc:
            self._errors.seek(0)
            said = [line.strip() for line in self._errors.read().decode(errors="replace").splitlines() if line.strip()]
            raise RuntimeError(f"{exc}: {said[-1][:200]}" if said else str(exc)) from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._errors.close()


def wait_for_prefect(api_url: str, timeout: float, process: subprocess.Popen | None = None, *,
                     what: str = "the Prefect server") -> None:
    """Poll `api_url`/health until it answers 200; RuntimeError if the process dies or time runs out."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {timeout:.0f} s")
