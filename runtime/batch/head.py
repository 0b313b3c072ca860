"""The local Ray cluster of ``mdhr-batch`` (no ``--address``), held by a
process in a session of its own.

Started by ``ray.init()`` in the command's process, Ray's processes (GCS,
raylet, workers) would share the command's process group, and a signal to
that group (a scheduler's SIGTERM, ``timeout``, ``kill -TERM -PGID``) would
kill them under the command while it is still stopping its job: its Ray
core can then abort it or hold it past its stop.  So the command starts
this module (``python -m mdhr_runtime.batch.head``) in a new session; it
starts the cluster, says its address on standard output and holds it until
its standard input closes, which happens when the command is done with it
and when the command dies, however it dies.  The command joins the cluster
by its address (``cluster.joined``), as it would join a remote one, and a
signal to its group reaches the command alone, which then stops the
cluster itself (``LocalHead.stop``): gracefully, then by killing whatever
is left in the session.
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import select
import signal
import subprocess
import sys
import time

from mdhr.errors import BackendUnavailable, param

START_TIMEOUT_S = 300  # starting Ray takes seconds; much longer on a busy machine
# Ray's own shutdown may take this long (2 s measured at load 8 on 2 cores);
# then what is left of the session is killed.  A job cut short (a signal: the
# command has 5 s to stop) waits less.
STOP_GRACE_S = 5.0
STOP_GRACE_CUT_SHORT_S = 1.0
_ADDRESS, _ERROR = "address ", "error "


class LocalHead:
    """The process holding a local cluster; ``address`` once it is up."""

    def __init__(self):
        self.grace = STOP_GRACE_S  # for stop()
        self.environment = authentication()
        self.process = subprocess.Popen([sys.executable, "-m", "mdhr_runtime.batch.head"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
                                        env={**os.environ, **self.environment})
        self.address = ""

    def wait_until_up(self) -> str:
        """The cluster's address; BackendUnavailable when it could not start."""
        line = _read_line(self.process.stdout, START_TIMEOUT_S)
        if line is not None and line.startswith(_ADDRESS):
            self.address = line[len(_ADDRESS):]
            return self.address
        if line is None:
            why = f"it did not start within {START_TIMEOUT_S} s"
        else:
            why = line[len(_ERROR):] if line.startswith(_ERROR) else "it ended as it started"
        raise BackendUnavailable(f"cannot start a local Ray cluster ({why}); check that Ray works here ('ray start "
                                 f"--head', then 'ray stop') or give {param('address')} of a running cluster")

    @contextlib.contextmanager
    def credentials(self):
        """In the block, this process's Ray uses the cluster's token."""
        before = {name: os.environ.get(name) for name in self.environment}
        _apply(self.environment)
        try:
            yield
        finally:
            _apply(before)

    @classmethod
    @contextlib.contextmanager
    def running(cls):
        """A head for the block, stopped on the way out: sooner when the
        block ends by an exception (an interrupt, an error)."""
        head = cls()
        try:
            yield head
        except BaseException:
            head.grace = STOP_GRACE_CUT_SHORT_S
            raise
        finally:
            head.stop()

    def stop(self) -> None:
        """Ray's shutdown, for up to ``grace`` seconds; then every process
        left in the session is killed.  Bounded even when a second signal
        interrupts the wait: the kill still happens."""
        try:
            self.process.stdin.close()
            self.process.wait(self.grace)
        except subprocess.TimeoutExpired:
            pass
        finally:
            kill_session(self.process.pid)
            self.process.wait()
            self.process.stdout.close()


def authentication() -> dict[str, str]:
    """What the cluster's processes and the command add to their environment:
    token authentication, as Ray gives its own local clusters, with a token
    of this job's own.  Ray's default token is the file ~/.ray/auth_token,
    which another Ray on the machine may replace between the cluster's
    start and the command's joining; a mode the user set is kept."""
    if os.environ.get("RAY_AUTH_MODE") is not None:
        return {}
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def _apply(environment: dict[str, str | None]) -> None:
    """Set (or, for None, remove) these variables, and have an imported
    Ray read them again: it reads its authentication settings when it is
    imported, and ``ray.init`` refreshes them the same way for the local
    clusters it starts itself."""
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if environment and "ray._raylet" in sys.modules:
        try:
            from ray._raylet import AuthenticationTokenLoader, Config
        except ImportError:  # a Ray without token authentication: nothing to read again
            return
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def _read_line(stream, timeout: float) -> str | None:
    """One line from ``stream``, None when none came within ``timeout``;
    waits in short steps so that a signal's handler runs at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.2)
        if ready:
            return stream.readline().decode(errors="replace").strip()
    return None


def kill_session(session: int) -> None:
    """SIGKILL every process of ``session`` (Ray's workers make process
    groups of their own inside it); on a system without /proc, its leader's
    process group."""
    if not os.path.isdir("/proc/self"):
        try:
            os.killpg(session, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return
    for _ in range(20):  # processes starting while this runs are caught by the next round
        alive = _session_members(session)
        if not alive:
            return
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)


def _session_members(session: int) -> list[int]:
    """Live (not yet dead) processes of ``session``."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        # after the command's name: state, ppid, pgrp, session
        if int(fields[3]) == session and fields[0] not in (b"Z", b"X"):
            members.append(int(name))
    return members


def main() -> int:
    """The holding process: start the cluster, say its address, hold it
    until standard input closes, shut it down."""
    channel = os.fdopen(os.dup(1), "w")  # not inherited: Ray's processes keep no end of the command's pipes
    holder = os.dup(0)
    quiet = os.open(os.devnull, os.O_RDWR)
    os.dup2(quiet, 0)
    os.dup2(quiet, 1)
    try:
        import ray

        ray.init(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        address = ray.get_runtime_context().gcs_address
    except Exception as e:  # Ray raises many kinds here
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        channel.write(f"{_ERROR}{first[:300]}\n")
        channel.close()
        return 2
    channel.write(f"{_ADDRESS}{address}\n")
    channel.close()
    while os.read(holder, 4096):  # until the command closes its end, or ends
        pass
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
