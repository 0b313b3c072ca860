"""A real multi-node Ray cluster on this machine, for the tests: a head and
more nodes, each started by its own ``ray start`` (its own raylet, object
store, CPUs and temporary folder), joined over TCP as on separate machines.

Every process a cluster starts is found again and killed on ``stop()``:
the ``ray start`` daemons by their process group (each ``ray start`` runs
in a new session), the Ray workers (their own process groups) as children
of the raylets.  ``ray stop`` is never used: it stops every Ray on the
machine, other users' too.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


# Token authentication, as a cluster reachable by others should run: the
# nodes and every driver share this session's token (and no one else's).
TOKEN = secrets.token_hex(32)


def ray_environment() -> dict:
    """The environment of every node and driver of the tests' clusters."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN)
    return env


@dataclass
class RayNode:
    temp_dir: Path
    group: int  # process group of its ray start and the daemons it left

    def processes(self) -> list[int]:
        """Its daemons, and Ray workers (own process groups) started by its raylet."""
        found = []
        daemons = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.getpgid(int(entry.name)) == self.group:
                        daemons.add(int(entry.name))
                except OSError:
                    pass
        found += sorted(daemons)
        for pid in _all_pids():
            if _parent(pid) in daemons and pid not in daemons:
                found.append(pid)
        return found

    def raylet(self) -> int:
        for pid in self.processes():
            if _cmdline(pid).split(" ")[0].endswith("/raylet/raylet"):
                return pid
        raise AssertionError(f"no raylet for {self.temp_dir}")

    def busy_workers(self, method: str) -> list[int]:
        """Workers of this node running ``method`` (Ray titles a worker process
        ``ray::Class.method()`` while it runs a call)."""
        raylet = self.raylet()
        return [pid for pid in _all_pids() if _parent(pid) == raylet and _cmdline(pid).startswith(f"ray::{method}")]

    def kill(self) -> None:
        for pid in reversed(self.processes()):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


@dataclass
class Cluster:
    address: str
    nodes: list[RayNode] = field(default_factory=list)
    root: Path = None

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
        deadline = time.monotonic() + 20
        while any(node.processes() for node in self.nodes) and time.monotonic() < deadline:
            time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)

    def ask(self, expression: str):
        """``expression`` evaluated (to JSON) by a separate driver joined to
        the cluster: the test process never joins it."""
        out = run_driver(self.address, f"print(json.dumps({expression}))\n", timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    def head_node_id(self) -> str:
        return self.ask("[n['NodeID'] for n in ray.nodes() if 'node:__internal_head__' in n['Resources']][0]")

    def actors_and_groups(self) -> tuple[list[str], list[str]]:
        """Actors not dead and placement groups not removed, from the
        cluster's control store (GCS)."""
        return tuple(self.ask(
            "[[a['ActorClassName'] + ':' + a['State'] for a in ray._private.state.actors().values() "
            "if a['State'] != 'DEAD'], [g for g, v in ray.util.placement_group_table().items() "
            "if v['state'] != 'REMOVED']]"))


def start_node(root: Path, name: str, cpus: int, head_address: str | None = None,
               wrapper: list[str] | None = None) -> tuple[RayNode, str]:
    """One ``ray start`` in its own session; its temporary folder short (Ray's
    socket paths must fit 107 bytes).  ``wrapper`` runs it inside another
    command (a private mount namespace)."""
    temp = root / name
    command = RAY + ["start", "--num-cpus", str(cpus), "--temp-dir", str(temp), "--object-store-memory",
                     str(80 * 2**20), "--disable-usage-stats", "--min-worker-port", "0", "--max-worker-port", "0",
                     "--dashboard-agent-listen-port", str(free_port()),
                     "--dashboard-agent-grpc-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
                     "--metrics-export-port", str(free_port())]
    if head_address is None:
        command += ["--head", "--port", str(free_port()), "--include-dashboard", "false",
                    "--ray-client-server-port", str(free_port()), "--dashboard-port", str(free_port())]
    else:
        command += ["--address", head_address]
    started = subprocess.Popen((wrapper or []) + command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True, env=ray_environment())
    node = RayNode(temp, started.pid)
    try:
        output, _ = started.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        node.kill()
        raise
    if started.returncode != 0:
        node.kill()
        raise RuntimeError(f"ray start failed: {output[-2000:]}")
    found = re.search(r"--address='([^']+)'", output)
    return node, found.group(1) if found else head_address


def start_cluster(cpus: tuple[int, ...] = (1, 1), wrappers: dict[int, list[str]] | None = None) -> Cluster:
    """A head with ``cpus[0]`` CPUs and one node more per further entry."""
    root = Path(tempfile.mkdtemp(prefix="mr", dir="/tmp"))
    cluster = Cluster("", root=root)
    try:
        head, address = start_node(root, "h", cpus[0])
        cluster.address = address
        cluster.nodes.append(head)
        for number, count in enumerate(cpus[1:], start=1):
            node, _ = start_node(root, f"n{number}", count, address, (wrappers or {}).get(number))
            cluster.nodes.append(node)
        wait_for_nodes(cluster, len(cpus))
    except BaseException:
        cluster.stop()
        raise
    return cluster


def wait_for_nodes(cluster: Cluster, count: int, timeout: float = 120) -> None:
    run_driver(cluster.address, f"deadline = time.monotonic() + {timeout}\n"
               f"while sum(n['Alive'] for n in ray.nodes()) < {count} and time.monotonic() < deadline:\n"
               "    time.sleep(0.5)\n"
               f"assert sum(n['Alive'] for n in ray.nodes()) >= {count}\n", timeout=timeout + 60).check_returncode()


def run_driver(address: str, body: str, timeout: float) -> subprocess.CompletedProcess:
    """``body`` run by a separate driver process joined to the cluster at
    ``address`` (with ``json``, ``time`` and ``ray`` imported)."""
    script = ("import json, time, ray\n"
              f"ray.init(address={address!r}, logging_level='ERROR', log_to_driver=False)\n" + body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
                          env=ray_environment())


def batch_command(inputs, bundle, out, address: str, *more) -> list[str]:
    """mdhr-batch joined to the cluster at ``address``, as a process of its own."""
    return [sys.executable, "-c", "from mdhr_runtime.cli.batch import main; main()", *map(str, inputs),
            "--model", str(bundle), "--out", str(out), "--address", address, *map(str, more)]


def run_batch(*args, timeout: float | None = 900) -> subprocess.CompletedProcess:
    """mdhr-batch (``batch_command``'s arguments) run to its end."""
    return subprocess.run(batch_command(*args), capture_output=True, text=True, timeout=timeout,
                          env=ray_environment())


def start_batch(*args) -> subprocess.Popen:
    """mdhr-batch (``batch_command``'s arguments) started, its error output kept."""
    return subprocess.Popen(batch_command(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=ray_environment())


def hidden(folder: Path) -> list[str]:
    """A command prefix running a process where ``folder`` is an empty
    folder: a private mount namespace with a tmpfs over it (as a machine
    without that storage mounted).  Needs unprivileged user namespaces or
    root; None where they are not available."""
    probe = subprocess.run(["unshare", "-m", "--map-root-user", "true"], capture_output=True) \
        if os.geteuid() != 0 else subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        return None
    user = [] if os.geteuid() == 0 else ["--map-root-user"]
    return ["unshare", "-m", *user, "sh", "-c", 'mount -t tmpfs none "$0" && exec "$@"', str(folder)]


def _all_pids() -> list[int]:
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
