"""The Ray side of ``mdhr-batch``: joining a cluster, checking before any
work that its nodes can do the job, and a pool of workers that survives
losing a worker or a whole node.

What a node needs: mdhr-toolkit importable by the Python its Ray workers
run, and the bundle and the input videos at the paths the driver names
(shared storage).  ``check_nodes`` asks every live node, through a small
task pinned to it, before a model is loaded anywhere.

``WorkerPool`` hands tasks to ``AUWorker`` actors itself rather than
through Ray's actor restarts: an actor restarted after its node died needs
a CPU on a surviving node, where every CPU is held by a live worker, so it
would wait for ever with its task.  Here a lost worker is dropped, its task
goes back to the queue for a live one (at most ``retries`` times), and a
replacement is started, used if and when the cluster finds room for it.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from mdhr.errors import BackendUnavailable, InputError, MDHRError, param
from mdhr_runtime.batch.head import LocalHead

PROBE_TIMEOUT_S = 120  # a node starts a Python worker for its probe: seconds on a busy machine
NO_WORKER_TIMEOUT_S = 300  # no worker alive and none placed for this long: the job cannot go on
_HOST_PORT = re.compile(r"^(?:ray://)?(\[[0-9a-fA-F:]+\]|[^:/\[\]]+):(\d{1,5})$")


# -- joining -------------------------------------------------------------------


@contextlib.contextmanager
def joined(ray, address: str | None):
    """In the block, this process is joined to ``address``, or to a Ray
    already running in this process (tests), or to a local cluster sized to
    this machine, started for the block in a session of its own
    (``head.LocalHead``: a signal to the command's process group does not
    reach Ray's processes); on the way out it leaves the cluster and stops
    the local one, whatever ended the block."""
    if not address and ray.is_initialized():
        yield
        return
    with contextlib.ExitStack() as stack:
        head = None
        if address:
            _check_reachable(address)
        else:
            head = stack.enter_context(LocalHead.running())
            address = head.wait_until_up()
            stack.enter_context(head.credentials())
        stack.callback(ray.shutdown)  # also after a start cut short
        try:
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        except Exception as e:  # Ray raises many kinds here (connection, authentication, version)
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            if head is not None:
                raise BackendUnavailable(f"cannot join the local Ray cluster started for this job ({first}); check "
                                         "that Ray works here ('ray start --head', then 'ray stop') or give "
                                         f"{param('address')}") from None
            raise InputError(f"{param('address')} {address}: cannot join a Ray cluster there ({first}); start one with "
                             "'ray start --head' or give the head's address (host:port)") from None
        yield


def _check_reachable(address: str) -> None:
    """host:port (or ray://host:port) answers at all: Ray's own connect
    retries a silent address for minutes."""
    match = _HOST_PORT.match(address.strip())
    if not match:
        return  # "auto", or a form Ray resolves itself (and refuses quickly)
    host, port = match.group(1).strip("[]"), int(match.group(2))
    try:
        with socket.create_connection((host, port), timeout=5):
            pass
    except OSError as e:
        raise InputError(f"{param('address')} {address}: nothing answers there ({e.strerror or e}); start the cluster's "
                         "head with 'ray start --head' or check the address and port") from None


# -- the nodes -------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    node_id: str
    address: str
    cpus: int

    @property
    def name(self) -> str:
        return f"{self.address} ({self.node_id[:12]})"


def live_nodes(ray) -> list[Node]:
    return [Node(n["NodeID"], n.get("NodeManagerAddress", "?"), int(n.get("Resources", {}).get("CPU", 0)))
            for n in ray.nodes() if n.get("Alive")]


def worker_slots(nodes: Sequence[Node], threads: int, address: str | None) -> int:
    """How many workers of ``threads`` CPUs the cluster holds at once; a
    worker cannot span nodes, so one needing more CPUs than the largest
    node has could never start."""
    largest = max((n.cpus for n in nodes), default=0)
    if threads > largest:
        where = f"the cluster at {address}" if address else "this machine's Ray"
        raise InputError(f"{param('threads_per_worker')} {threads} needs {threads} CPUs on one node, and the largest "
                         f"node of {where} has {largest}; give {param('threads_per_worker')} {max(largest, 1)} or add "
                         "bigger nodes")
    return sum(n.cpus // threads for n in nodes)


def probe_node(bundle_dir: str, card: str, videos: Sequence[str]) -> dict:
    """Run on a node: can it import the toolkit, and does it see the bundle
    and the videos at the driver's paths?"""
    import mdhr_runtime  # noqa: F401  (the task only deserialises where the toolkit is importable)

    missing = [v for v in videos if not os.path.isfile(v)]
    return {"bundle": os.path.isfile(os.path.join(bundle_dir, card)), "missing": missing[:3],
            "missing_count": len(missing)}


def check_nodes(ray, nodes: Sequence[Node], bundle_dir: str, card: str, videos: Sequence[str]) -> None:
    """Every node with CPUs can run the job; refuse with one line naming the
    first node that cannot, before any model loads."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(probe_node)
    pending = {probe.options(num_cpus=0, max_retries=0,
                             scheduling_strategy=NodeAffinitySchedulingStrategy(n.node_id, soft=False))
               .remote(bundle_dir, card, list(videos)): n for n in nodes if n.cpus > 0}
    ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=PROBE_TIMEOUT_S)
    if late:
        raise MDHRError(f"node {pending[late[0]].name} did not answer within {PROBE_TIMEOUT_S} s; check that it is "
                        "healthy ('ray status') and run again")
    for ref in ready:
        node = pending[ref]
        try:
            answer = ray.get(ref)
        except ray.exceptions.RayError as e:
            raise MDHRError(f"node {node.name} cannot run mdhr-toolkit ({_cause(e)}); install mdhr-toolkit in the "
                            "Python that Ray runs on every node") from None
        if not answer["bundle"]:
            raise MDHRError(f"node {node.name} does not see the bundle {bundle_dir}; put it on storage that every "
                            "node mounts at the same path")
        if answer["missing_count"]:
            raise MDHRError(f"node {node.name} does not see {answer['missing_count']} of the videos (first: "
                            f"{answer['missing'][0]}); put the corpus on storage that every node mounts at the "
                            "same path")


def _cause(error: Exception) -> str:
    """The last line of a remote failure that names an exception."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line)]
    return (named or lines or [type(error).__name__])[-1][:200]


# -- the pool --------------------------------------------------------------------


@dataclass
class Attempt:
    """A task and the times it was started again after its worker was lost."""

    task: object
    retries: int = 0


@dataclass(frozen=True)
class Outcome:
    task: object
    reply: tuple | None  # the worker's answer; None when the task was lost with its workers
    retries: int
    error: str = ""


class WorkerPool:
    """Tasks over ``size`` actors made by ``make_actor``; ``results()``
    yields an ``Outcome`` for every task, in the order they finish, and
    ``None`` every ``poll_s`` while nothing finished (for progress)."""

    def __init__(self, ray, make_actor: Callable[[], object], size: int, retries: int, poll_s: float):
        self.ray, self.make_actor, self.size, self.retries = ray, make_actor, size, retries
        self.poll_s = poll_s
        self.idle: list = []
        self.starting: dict = {}  # ready() call -> actor being placed
        self.running: dict = {}  # run() call -> (actor, attempt)
        self.queue: collections.deque[Attempt] = collections.deque()
        self.starts_left = 0
        self.last_error = ""  # why the last worker failed to start

    def results(self, tasks: Iterable, method: Callable[[object, object], object]):
        self.queue.extend(Attempt(t) for t in tasks)
        self.starts_left = 2 * self.size + len(self.queue)  # replacements are bounded: no endless churn
        for _ in range(min(self.size, len(self.queue))):
            self._start()
        alone_since = None
        while self.queue or self.running:
            self._dispatch(method)
            if not self.idle and not self.running:
                alone_since = alone_since or time.monotonic()
                if not self.starting or time.monotonic() - alone_since > NO_WORKER_TIMEOUT_S:
                    yield from self._give_up()
                    break
            else:
                alone_since = None
            done, _ = self.ray.wait(list(self.starting) + list(self.running), num_returns=1, timeout=self.poll_s)
            if not done:
                yield None
                continue
            outcome = self._finished(done[0])
            if outcome is not None:
                yield outcome

    def close(self) -> None:
        """Kill every actor this pool made, placed or not."""
        for actor in self.idle + list(self.starting.values()) + [a for a, _ in self.running.values()]:
            self._kill(actor)
        self.idle, self.starting, self.running = [], {}, {}

    def _start(self) -> None:
        if self.starts_left <= 0:
            return
        self.starts_left -= 1
        actor = self.make_actor()
        self.starting[actor.node.remote()] = actor

    def _dispatch(self, method) -> None:
        while self.idle and self.queue:
            actor, attempt = self.idle.pop(), self.queue.popleft()
            self.running[method(actor, attempt.task)] = (actor, attempt)

    def _finished(self, ref) -> Outcome | None:
        if ref in self.starting:
            actor = self.starting.pop(ref)
            try:
                self.ray.get(ref)
                self.idle.append(actor)
            except self.ray.exceptions.RayError as e:
                self._kill(actor)
                self.last_error = _cause(e)
                if self.queue or self.running:
                    self._start()
            return None
        actor, attempt = self.running.pop(ref)
        try:
            reply = self.ray.get(ref)
        except self.ray.exceptions.RayError as e:  # the worker, or its node, is gone
            self._kill(actor)
            self._start()
            if attempt.retries >= self.retries:
                return Outcome(attempt.task, None, attempt.retries,
                               f"its worker was lost {attempt.retries + 1} times ({_cause(e)})")
            attempt.retries += 1
            self.queue.appendleft(attempt)
            return None
        self.idle.append(actor)
        return Outcome(attempt.task, reply, attempt.retries)

    def _give_up(self):
        why = self.last_error or "the cluster had no room for one"
        while self.queue:
            attempt = self.queue.popleft()
            yield Outcome(attempt.task, None, attempt.retries, f"no worker could start ({why})")

    def _kill(self, actor) -> None:
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception:  # already gone with its node
            pass
