"""``mdhr-batch`` on Ray: many videos (and long ones in segments) over a pool
of workers, each holding one ``AUDetector``.

The driver (this process) expands the inputs, skips what an earlier run
finished, probes each video, plans its segments and hands them to a pool
of ``AUWorker`` actors (``cluster.WorkerPool``).  Workers return rows; the driver
stitches a video's segments, writes its CSV atomically and rewrites
``summary.csv`` (atomically) as each video finishes.  Only the driver
writes, so a killed worker or an interrupted job leaves no partial file:
at most the videos in flight are lost, and a rerun does them again.

On a cluster (``--address``) the inputs and the bundle must be at the same
paths on every node (shared storage) and the workers' Python must have
mdhr-toolkit installed (checked on every node before any work:
``cluster.check_nodes``); the outputs are written where the driver runs.
A worker lost with its node is replaced and its video given to a live
worker (``cluster.WorkerPool``); the summary names the node that scored
each video and how many times it was started again.

mdhr-batch only replaces files it wrote: the outputs ``summary.csv``
lists (and their reports).  Jobs sharing an ``--out`` take the folder's
lock to merge their rows into the summary, and a video's row is recorded
before its CSV is renamed into place, so every CSV in the folder is one a
summary row names.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mdhr.errors import InputError, MDHRError, param
from mdhr_runtime.batch import cluster
from mdhr_runtime.batch.corpus import (
    FAILED,
    OK,
    PARTIAL,
    SKIPPED,
    SUMMARY_FILE,
    SummaryRow,
    bundle_hash,
    finished_before,
    is_batch_summary,
    output_names,
    read_summary,
    summary_lock,
    write_summary,
)
from mdhr_runtime.batch.segments import WHOLE_VIDEO, Segment, SegmentPlan, SegmentResult, predict_segment, stitch
from mdhr_runtime.bundle import CARD_FILE, load_bundle
from mdhr_runtime.choices import DEFAULT_FACES, DEFAULT_WINDOWS
from mdhr_runtime.detector import AUDetector
from mdhr_runtime.faces.multitrack import DEFAULT_MIN_FACE
from mdhr_runtime.faces.quality import QualityOptions
from mdhr_runtime.files.atomic import atomic_path
from mdhr_runtime.files.outputs import check_input, check_names, check_output_folder, check_room, remove_stale_staging
from mdhr_runtime.held import signals_held
from mdhr_runtime.results.index import is_batch_index, report_path
from mdhr_runtime.sources.frames import FrameSource
from mdhr_runtime.sources.live import quiet_ffmpeg
from mdhr_runtime.windows.streams import WindowPlan

# A task whose worker is lost (its process died: out of memory, a crashing
# decoder; or its node did) goes to another worker once more; a video lost
# twice is marked failed.
TASK_RETRIES = 1
PROGRESS_POLL_S = 0.5


@dataclass(frozen=True)
class BatchOptions:
    bundle_dir: Path
    out_dir: Path
    backend: str = "auto"
    workers: int | None = None  # default: the cluster's CPUs / threads_per_worker
    threads_per_worker: int = 1
    segment_frames: int | None = None
    address: str | None = None
    faces: str = DEFAULT_FACES  # or "all": every face, rows with a face_id (whole videos only)
    min_face: int = DEFAULT_MIN_FACE
    windows: str = DEFAULT_WINDOWS  # as mdhr-run's default, so the two tools agree
    hop: int | None = None
    quality: QualityOptions = QualityOptions()  # the rows' quality flags, as mdhr-run's --flag-*
    report: Path | None = None  # the index page; with it, OUT/<name>.html beside each CSV


@dataclass(frozen=True)
class Task:
    """One worker call: a whole video (``segment`` None, scored exactly as
    ``mdhr-run`` does) or one segment of it."""

    video: Path
    segment: Segment | None
    number: int  # unique, for progress reports


class ProgressLog:
    """A Ray actor the workers tell how far each task got (frames done), and
    the driver reads for its progress bar."""

    def __init__(self):
        self.reports: dict[int, int] = {}

    def report(self, number: int, done: int) -> None:
        self.reports[number] = max(done, self.reports.get(number, 0))

    def take(self) -> dict[int, int]:
        reports, self.reports = self.reports, {}
        return reports


class AUWorker:
    """A Ray actor: one AUDetector, loaded once, scoring many tasks."""

    def __init__(self, bundle_dir: str, backend: str, threads: int, progress_log: str, faces: str = DEFAULT_FACES,
                 min_face: int = DEFAULT_MIN_FACE, windows: str = DEFAULT_WINDOWS, hop: int | None = None,
                 quality: QualityOptions = QualityOptions()):
        import ray

        quiet_ffmpeg(verbose=False)
        self.detector = AUDetector(bundle_dir, backend=backend, threads=threads, quality=quality)
        self.faces, self.min_face, self.windows, self.hop = faces, min_face, windows, hop
        self.node_id = ray.get_runtime_context().get_node_id()
        # Found by name (not passed as a handle) so a replacement worker needs
        # nothing from the object store; progress is best effort.
        try:
            self.progress = ray.get_actor(progress_log)
        except ValueError:
            self.progress = None

    def node(self) -> str:
        """The node this worker runs on (answering also says it is ready)."""
        return self.node_id

    def run(self, task: Task) -> tuple[Task, SegmentResult | None, str, str]:
        """The task's rows, or None and a one-line error, and this worker's
        node.  Errors stay here: one bad video never stops the job."""
        def report(done: int) -> None:
            if self.progress is not None:
                self.progress.report.remote(task.number, done)  # no wait: progress is best effort

        try:
            if task.segment is None:
                table = self.detector.predict_video(task.video, progress=report, windows=self.windows, hop=self.hop,
                                                    faces=self.faces, min_face=self.min_face)
                result = SegmentResult(WHOLE_VIDEO, table, not table.complete, table.frames_declared)
            else:
                result = predict_segment(self.detector, task.video, task.segment, self.windows, self.hop,
                                         progress=report)
            return task, result, "", self.node_id
        except MDHRError as e:
            return task, None, str(e), self.node_id
        except Exception as e:  # a bug or a library failure: this video fails, the job goes on
            first = str(e).splitlines()[0] if str(e) else ""
            return task, None, f"internal error: {type(e).__name__}: {first}", self.node_id


@dataclass
class _Video:
    path: Path
    output: str
    frames: int | None
    fps: float
    segments: list[Segment]
    results: list[SegmentResult] = field(default_factory=list)
    finished: int = 0  # tasks back, with results or errors
    error: str = ""
    nodes: list[str] = field(default_factory=list)  # where its tasks ran, in order of finishing
    retries: int = 0


class BatchJob:
    """One run of ``mdhr-batch``: ``run()`` returns the summary rows of its
    inputs (one per input, in input order)."""

    def __init__(self, videos: list[Path], options: BatchOptions, say: Callable[[str], None],
                 progress_bar: bool = True):
        self.videos = videos
        self.options = options
        self.say = say
        self.progress_bar = progress_bar
        self.bundle = load_bundle(options.bundle_dir)
        self.digest = bundle_hash(self.bundle)
        self.summary_path = options.out_dir / SUMMARY_FILE
        self.rows: dict[Path, SummaryRow] = {}
        self.work_done = 0  # tasks the workers ran
        self.terminated = False  # stopped by SIGTERM

    # -- planning --------------------------------------------------------

    def plan(self) -> list[_Video]:
        """Rows for videos skipped or failing their probe; the rest to run.
        Refuses (before anything is written) a job that would replace a
        file mdhr-batch did not write."""
        previous = self._previous()
        kept = {v: previous[str(v)].output for v in self.videos if str(v) in previous and previous[str(v)].output}
        names = output_names(self.videos, kept)
        windows = WindowPlan.make(self.options.windows, self.bundle.frames, self.options.hop)
        plan = None if self.options.segment_frames is None else SegmentPlan(self.options.segment_frames, windows)
        todo = []
        for video in self.videos:
            before = previous.get(str(video))
            if finished_before(before, self.options.out_dir, self.digest):
                self.rows[video] = dataclasses.replace(before, status=SKIPPED)
                continue
            check_names(self.options.out_dir / names[video], f"the output of {video}")
            remove_stale_staging(self.options.out_dir / names[video], self.say)
            try:
                check_input(video, "input", folder_ok=False)
                source = FrameSource(video)
            except MDHRError as e:
                self.rows[video] = SummaryRow(str(video), status=FAILED, error=str(e), bundle_hash=self.digest)
                continue
            segments = [WHOLE_VIDEO] if plan is None else plan.segments(source.frame_count)
            todo.append(_Video(video, names[video], source.frame_count, source.fps, segments))
        self._check_ours([v.output for v in todo] + [r.output for r in self.rows.values() if r.output], previous)
        check_room({param("out_dir"): self.summary_path}, sum(v.frames or 0 for v in todo))
        return todo

    def _previous(self) -> dict[str, SummaryRow]:
        """The rows of earlier jobs on ``--out``; refuses a summary.csv there
        that mdhr-batch did not write."""
        path = self.summary_path
        if path.is_symlink() or (path.exists() and not (path.is_file() and is_batch_summary(path))):
            raise InputError(f"{param('out_dir')}: {path} is not a summary written by mdhr-batch; mdhr-batch never "
                             f"replaces a file it did not write: move it away or choose another {param('out_dir')}")
        return read_summary(path)

    def _check_ours(self, outputs: list[str], previous: dict[str, SummaryRow]) -> None:
        """Every file the job may write is absent or one an mdhr-batch job
        wrote (a CSV its summary names, that CSV's report, the index of a
        folder with a summary)."""
        out = self.options.out_dir
        owned = {(out / r.output) for r in previous.values() if r.output}
        targets = [out / name for name in outputs]
        if self.options.report is not None:
            owned |= {report_path(out, r.output) for r in previous.values() if r.output}
            index = Path(self.options.report)
            owned |= {index} if is_batch_index(index) else set()
            targets += [report_path(out, name) for name in outputs] + [index]
        for target in targets:
            if (target.is_symlink() or target.exists()) and (target not in owned or not target.is_file()
                                                               or target.is_symlink()):
                raise InputError(f"{param('out_dir')}: {target} is not a file an earlier mdhr-batch job wrote there "
                                 f"(its {SUMMARY_FILE} does not list it); mdhr-batch never replaces a file it did "
                                 f"not write: move it away or choose another {param('out_dir')}")

    # -- running ---------------------------------------------------------

    def run(self) -> list[SummaryRow]:
        remove_stale_staging(self.summary_path, self.say)
        todo = self.plan()
        if todo:
            self._run_on_ray(todo)  # writes the summary once the cluster is found fit
        else:
            self._write_summary()
        return self._ordered_rows()

    def summary_rows(self) -> list[SummaryRow]:
        """Every row of ``--out``'s summary: this job's and other jobs'."""
        return list(read_summary(self.summary_path).values())

    def _run_on_ray(self, todo: list[_Video]) -> None:
        import ray

        # Ray prints its own notices (a worker died, a task is retried) from
        # a thread to sys.stdout; stdout is for results (--json).
        with contextlib.redirect_stdout(sys.stderr), contextlib.ExitStack() as stack:
            try:
                stack.enter_context(cluster.joined(ray, self.options.address))
            except SystemExit as stop:
                # SIGTERM while Ray connects: Ray's own handler exits with the
                # signal's number; stop as the handler below would.
                if stop.code != signal.SIGTERM:
                    raise
                self.terminated = True
                raise KeyboardInterrupt() from None
            if threading.current_thread() is threading.main_thread():
                # Ray's start installs a SIGTERM handler that kills the process
                # on the spot; this one stops the job as Ctrl-C does.
                signal.signal(signal.SIGTERM, self._stop_on_sigterm)
            nodes = cluster.live_nodes(ray)
            slots = cluster.worker_slots(nodes, self.options.threads_per_worker, self.options.address)
            if self.options.address:
                cluster.check_nodes(ray, nodes, str(self.options.bundle_dir.absolute()), CARD_FILE,
                                    [str(v.path) for v in todo])
            self._write_summary()
            self._run_pool(ray, todo, slots)

    def _stop_on_sigterm(self, signum, frame):
        """Raised as an interrupt: Ray's waits let KeyboardInterrupt through
        cleanly, where another exception from a signal handler surfaces as a
        SystemError."""
        self.terminated = True
        raise KeyboardInterrupt()

    def _run_pool(self, ray, todo: list[_Video], slots: int) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        workers = self._worker_count(slots)
        threads = self.options.threads_per_worker
        log_name = f"mdhr-batch-progress-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        progress = ray.remote(ProgressLog).options(name=log_name, num_cpus=0, scheduling_strategy=here).remote()
        actor = ray.remote(AUWorker).options(num_cpus=threads, max_restarts=0)
        arguments = (str(self.options.bundle_dir.absolute()), self.options.backend, threads, log_name,
                     self.options.faces, self.options.min_face, self.options.windows, self.options.hop,
                     self.options.quality)
        pool = cluster.WorkerPool(ray, lambda: actor.remote(*arguments), min(workers, self._task_count(todo)),
                                  TASK_RETRIES, PROGRESS_POLL_S)
        try:
            self._follow(ray, pool, todo, progress)
        finally:
            pool.close()
            with contextlib.suppress(Exception):
                ray.kill(progress)

    def _follow(self, ray, pool: cluster.WorkerPool, todo: list[_Video], progress) -> None:
        """Hand out the tasks and collect each video as its last one is in."""
        from tqdm import tqdm

        videos = {v.path: v for v in todo}
        done_frames: dict[int, int] = {}
        total = sum(v.frames or 0 for v in todo) or None
        with tqdm(total=total, unit="frame", desc="mdhr-batch", disable=None if self.progress_bar else True,
                  dynamic_ncols=True) as bar:
            for outcome in pool.results(self._tasks(todo), lambda a, t: a.run.remote(t)):
                self._drain(progress, done_frames, bar)
                if outcome is None:
                    continue
                if outcome.reply is None:  # lost with its workers
                    task, result, node = outcome.task, None, ""
                    error = f"the worker processing it was lost ({outcome.error}: out of memory, a crash in decoding, " \
                            "or its node went away?)"
                else:
                    task, result, error, node = outcome.reply
                    self.work_done += 1
                frames = 0 if result is None else len({row.index for row in result.table.rows})
                bar.update(frames - done_frames.get(task.number, 0))
                done_frames[task.number] = frames
                self._collect(videos[task.video], result, error, node, outcome.retries)
                bar.set_postfix(self._counts(), refresh=False)

    def _worker_count(self, fits: int) -> int:
        """Workers the cluster can hold at once (``fits``): an actor Ray
        cannot place would wait forever with its tasks."""
        threads = self.options.threads_per_worker
        if self.options.workers and self.options.workers > fits:
            self.say(f"note: {self.options.workers} workers of {threads} thread(s) need {self.options.workers * threads} "
                     f"CPUs; the cluster has room for {fits}, so {fits} worker(s) run")
        return min(self.options.workers or fits, fits)

    @staticmethod
    def _task_count(todo: list[_Video]) -> int:
        return sum(len(v.segments) for v in todo)

    def _tasks(self, todo: list[_Video]) -> list[Task]:
        """Whole videos as they are; segmented ones as their segments."""
        tasks = []
        for video in todo:
            for segment in video.segments:
                whole = len(video.segments) == 1
                tasks.append(Task(video.path, None if whole else segment, len(tasks)))
        return tasks

    @staticmethod
    def _drain(progress, done_frames: dict[int, int], bar) -> None:
        import ray

        try:
            reports = ray.get(progress.take.remote(), timeout=10)
        except (ray.exceptions.RayError, TimeoutError):
            return  # progress is best effort
        for number, done in reports.items():
            if done > done_frames.get(number, 0):
                bar.update(done - done_frames.get(number, 0))
                done_frames[number] = done

    def _collect(self, video: _Video, result: SegmentResult | None, error: str, node: str, retries: int) -> None:
        """Keep a segment's result; when the video's last one is in, write it."""
        video.finished += 1
        video.retries += retries
        if node and node not in video.nodes:
            video.nodes.append(node)
        if result is None:
            video.error = video.error or error
        else:
            video.results.append(result)
        if video.finished < len(video.segments):
            return
        if video.error:
            self.rows[video.path] = SummaryRow(str(video.path), frames=video.frames, fps=video.fps,
                                               status=FAILED, error=video.error, bundle_hash=self.digest,
                                               node=" ".join(video.nodes), retries=video.retries)
            self._write_summary()
        else:
            self._write_video(video)

    def _write_video(self, video: _Video) -> None:
        """The video's CSV and its summary row: the row is recorded first and
        the staged CSV renamed into place after it, so a file in ``--out`` is
        always one the summary names (a row whose CSV is missing is redone)."""
        table = stitch(video.results, self.bundle.au_names, self.bundle.threshold)
        row = self._row(video, table)
        if not row.output:
            self.rows[video.path] = row
            self._write_summary()
            return
        with signals_held(), atomic_path(self.options.out_dir / video.output) as staged:
            table.write_csv(staged)
            self.rows[video.path] = row
            self._write_summary()

    def _row(self, video: _Video, table) -> SummaryRow:
        frames = len({r.index for r in table.rows})
        row = SummaryRow(str(video.path), frames=frames, fps=video.fps, output=video.output,
                         bundle_hash=self.digest, frames_with_face=len({r.index for r in table.rows if r.face.success}),
                         node=" ".join(video.nodes), retries=video.retries)
        if len(table) == 0:
            return dataclasses.replace(row, status=FAILED, output="",
                                       error=f"{video.path}: no frames could be read; is it an empty video?")
        if not table.complete:
            return dataclasses.replace(row, status=PARTIAL,
                                       error=f"{table.shortfall}: the file is truncated or damaged; the "
                                             f"{frames} frames read were written")
        # A video without a face, read to its end, is done like mdhr-run's: ok (docs/errors.md).
        return dataclasses.replace(row, status=OK)

    # -- the summary -----------------------------------------------------

    def _ordered_rows(self) -> list[SummaryRow]:
        return [self.rows[v] for v in self.videos if v in self.rows]

    def _write_summary(self) -> None:
        """This job's rows merged into the folder's summary, under its lock
        (other jobs may share ``--out``); nothing while there is no row."""
        rows = self._ordered_rows()
        if rows:
            with summary_lock(self.options.out_dir):
                write_summary(self.summary_path, rows)

    def _counts(self) -> dict[str, int]:
        rows = self.rows.values()
        return {"done": sum(r.fine for r in rows), "failed": sum(not r.fine for r in rows)}


def check_out_dir(out_dir: Path) -> None:
    """--out is a folder (or can be made) that this user can write in."""
    check_output_folder(out_dir, param("out_dir"))
    if out_dir.is_dir() and not os.access(out_dir, os.W_OK | os.X_OK):
        raise InputError(f"{param('out_dir')}: cannot write in {out_dir} (permission denied or read-only); "
                         "choose a writable output folder")
