"""``mdhr-batch`` on Ray: many videos (and long ones in segments) over a pool
of workers, each holding one ``AUDetector``.

The driver (this process) expands the inputs, skips what an earlier run
finished, probes each video, plans its segments and hands them to a Ray
``ActorPool`` of ``AUWorker`` actors.  Workers return rows; the driver
stitches a video's segments, writes its CSV atomically and rewrites
``summary.csv`` (atomically) as each video finishes.  Only the driver
writes, so a killed worker or an interrupted job leaves no partial file:
at most the videos in flight are lost, and a rerun does them again.

On a cluster (``--address``) the inputs and the bundle must be at the same
paths on every node (shared storage) and the workers' Python must have
mdhr-toolkit installed; the outputs are written where the driver runs.
"""
from __future__ import annotations

import dataclasses
import contextlib
import os
import signal
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mdhr.errors import MDHRError
from mdhr_runtime.batch.corpus import (SUMMARY_FILE, SummaryRow, bundle_hash, finished_before, output_names,
                                 read_summary, write_summary)
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.choices import DEFAULT_FACES, DEFAULT_WINDOWS
from mdhr_runtime.sources.live import quiet_ffmpeg
from mdhr_runtime.detector import AUDetector
from mdhr_runtime.faces.multitrack import DEFAULT_MIN_FACE
from mdhr_runtime.files.outputs import check_input, check_output_folder, remove_stale_staging
from mdhr_runtime.batch.segments import WHOLE_VIDEO, Segment, SegmentPlan, SegmentResult, predict_segment, stitch
from mdhr_runtime.sources.frames import FrameSource
from mdhr_runtime.windows.streams import WindowPlan

# A worker whose process dies (out of memory, a crashing decoder) is
# restarted by Ray and its task run once more; a video that kills it twice
# is marked failed.
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
                 min_face: int = DEFAULT_MIN_FACE, windows: str = DEFAULT_WINDOWS, hop: int | None = None):
        import ray

        quiet_ffmpeg(verbose=False)
        self.detector = AUDetector(bundle_dir, backend=backend, threads=threads)
        self.faces, self.min_face, self.windows, self.hop = faces, min_face, windows, hop
        # Found by name (not passed as a handle) so a restarted worker needs
        # nothing from the object store.
        self.progress = ray.get_actor(progress_log)

    def run(self, task: Task) -> tuple[Task, SegmentResult | None, str]:
        """The task's rows, or None and a one-line error.  Errors stay
        here: one bad video never stops the job."""
        def report(done: int) -> None:
            self.progress.report.remote(task.number, done)  # no wait: progress is best effort

        try:
            if task.segment is None:
                table = self.detector.predict_video(task.video, progress=report, windows=self.windows, hop=self.hop,
                                                    faces=self.faces, min_face=self.min_face)
                result = SegmentResult(WHOLE_VIDEO, table, not table.complete, table.frames_declared)
            else:
                result = predict_segment(self.detector, task.video, task.segment, self.windows, self.hop,
                                         progress=report)
            return task, result, ""
        except MDHRError as e:
            return task, None, str(e)
        except Exception as e:  # a bug or a library failure: this video fails, the job goes on
            first = str(e).splitlines()[0] if str(e) else ""
            return task, None, f"internal error: {type(e).__name__}: {first}"


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


class BatchJob:
    """One run of ``mdhr-batch``: ``run()`` returns the summary rows (one per
    input, in input order)."""

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
        """Rows for videos skipped or failing their probe; the rest to run."""
        previous = read_summary(self.summary_path)
        kept = {v: previous[str(v)].output for v in self.videos if str(v) in previous and previous[str(v)].output}
        names = output_names(self.videos, kept)
        windows = WindowPlan.make(self.options.windows, self.bundle.frames, self.options.hop)
        plan = None if self.options.segment_frames is None else SegmentPlan(self.options.segment_frames, windows)
        todo = []
        for video in self.videos:
            before = previous.get(str(video))
            if finished_before(before, self.options.out_dir, self.digest):
                self.rows[video] = dataclasses.replace(before, status="skipped")
                continue
            remove_stale_staging(self.options.out_dir / names[video], self.say)
            try:
                check_input(video, "input", folder_ok=False)
                source = FrameSource(video)
            except MDHRError as e:
                self.rows[video] = SummaryRow(str(video), status="failed", error=str(e), bundle_hash=self.digest)
                continue
            segments = [WHOLE_VIDEO] if plan is None else plan.segments(source.frame_count)
            todo.append(_Video(video, names[video], source.frame_count, source.fps, segments))
        return todo

    # -- running ---------------------------------------------------------

    def run(self) -> list[SummaryRow]:
        remove_stale_staging(self.summary_path, self.say)
        todo = self.plan()
        self._write_summary()
        if todo:
            self._run_on_ray(todo)
        return self._ordered_rows()

    def _run_on_ray(self, todo: list[_Video]) -> None:
        import ray

        # Ray prints its own notices (a worker died, a task is retried) from
        # a thread to sys.stdout; stdout is for results (--json).
        with contextlib.redirect_stdout(sys.stderr):
            try:
                started_here = self._connect(ray)
            except SystemExit as stop:
                # SIGTERM while Ray starts: Ray's own handler exits with the
                # signal's number; stop as the handler below would.
                if stop.code != signal.SIGTERM:
                    raise
                ray.shutdown()
                self.terminated = True
                raise KeyboardInterrupt() from None
            if threading.current_thread() is threading.main_thread():
                # Ray's start installs a SIGTERM handler that kills the process
                # on the spot; this one stops the job as Ctrl-C does.
                signal.signal(signal.SIGTERM, self._stop_on_sigterm)
            try:
                self._run_pool(ray, todo)
            finally:
                if started_here:
                    ray.shutdown()

    def _stop_on_sigterm(self, signum, frame):
        """Raised as an interrupt: Ray's waits let KeyboardInterrupt through
        cleanly, where another exception from a signal handler surfaces as a
        SystemError."""
        self.terminated = True
        raise KeyboardInterrupt()

    def _run_pool(self, ray, todo: list[_Video]) -> None:
        from ray.util import ActorPool
        from tqdm import tqdm

        workers = self._worker_count(int(ray.cluster_resources().get("CPU", 0)))
        threads = self.options.threads_per_worker
        log_name = f"mdhr-batch-progress-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        progress = ray.remote(ProgressLog).options(name=log_name, num_cpus=0).remote()
        actor = ray.remote(AUWorker).options(num_cpus=threads, max_restarts=-1,
                                             max_task_retries=TASK_RETRIES)
        pool = ActorPool([actor.remote(str(self.options.bundle_dir.absolute()), self.options.backend,
                                       threads, log_name, self.options.faces, self.options.min_face,
                                       self.options.windows, self.options.hop)
                          for _ in range(min(workers, self._task_count(todo)))])
        tasks = self._tasks(todo)
        by_number = {task.number: task for task in tasks}
        videos = {v.path: v for v in todo}
        for task in tasks:
            pool.submit(lambda a, t: a.run.remote(t), task)
        done_frames: dict[int, int] = {}
        total = sum(v.frames or 0 for v in todo) or None
        with tqdm(total=total, unit="frame", desc="mdhr-batch", disable=None if self.progress_bar else True,
                  dynamic_ncols=True) as bar:
            while pool.has_next():
                try:
                    task, result, error = pool.get_next_unordered(timeout=PROGRESS_POLL_S)
                except TimeoutError:
                    self._drain(progress, done_frames, bar)
                    continue
                except ray.exceptions.RayError:
                    continue  # a task whose worker died twice: found missing below
                by_number.pop(task.number, None)
                self.work_done += 1
                self._drain(progress, done_frames, bar)
                frames = 0 if result is None else len({row.index for row in result.table.rows})
                bar.update(frames - done_frames.get(task.number, 0))
                done_frames[task.number] = frames
                self._collect(videos[task.video], result, error)
                bar.set_postfix(self._counts(), refresh=False)
            for task in by_number.values():  # lost with their worker
                self._collect(videos[task.video], None, "the worker processing it died twice "
                                                       "(out of memory, or a crash in decoding?)")

    def _connect(self, ray) -> bool:
        """Join ``--address``, or an already running local Ray (tests), or
        start a local cluster sized to this machine; True when started here."""
        import logging

        if self.options.address:
            ray.init(address=self.options.address, logging_level=logging.ERROR, log_to_driver=False)
            return True
        if ray.is_initialized():
            return False
        ray.init(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        return True

    def _worker_count(self, cpus: int) -> int:
        """Workers the cluster can hold at once: an actor Ray cannot place
        would wait forever with its tasks."""
        threads = self.options.threads_per_worker
        if threads > cpus:
            raise MDHRError(f"--threads-per-worker {threads} is more than the cluster's {cpus} CPUs; give at most "
                            f"{cpus}")
        fits = cpus // threads
        if self.options.workers and self.options.workers > fits:
            self.say(f"note: {self.options.workers} workers of {threads} thread(s) need {self.options.workers * threads} "
                     f"CPUs; the cluster has {cpus}, so {fits} worker(s) run")
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

        for number, done in ray.get(progress.take.remote()).items():
            if done > done_frames.get(number, 0):
                bar.update(done - done_frames.get(number, 0))
                done_frames[number] = done

    def _collect(self, video: _Video, result: SegmentResult | None, error: str) -> None:
        """Keep a segment's result; when the video's last one is in, write it."""
        video.finished += 1
        if result is None:
            video.error = video.error or error
        else:
            video.results.append(result)
        if video.finished < len(video.segments):
            return
        if video.error:
            self.rows[video.path] = SummaryRow(str(video.path), frames=video.frames, fps=video.fps,
                                               status="failed", error=video.error, bundle_hash=self.digest)
        else:
            self.rows[video.path] = self._write_video(video)
        self._write_summary()

    def _write_video(self, video: _Video) -> SummaryRow:
        table = stitch(video.results, self.bundle.au_names, self.bundle.threshold)
        frames = len({r.index for r in table.rows})
        row = SummaryRow(str(video.path), frames=frames, fps=video.fps, output=video.output,
                         bundle_hash=self.digest,
                         frames_with_face=len({r.index for r in table.rows if r.face.success}))
        if len(table) == 0:
            return dataclasses.replace(row, status="failed", output="",
                                       error=f"{video.path}: no frames could be read; is it an empty video?")
        table.write_csv(self.options.out_dir / video.output)
        if not table.complete:
            return dataclasses.replace(row, status="partial",
                                       error=f"{table.shortfall}: the file is truncated or damaged; the "
                                             f"{frames} frames read were written")
        if row.frames_with_face == 0:
            return dataclasses.replace(row, status="failed",
                                       error=f"no face found in any of the {frames} frames (AU cells empty)")
        return dataclasses.replace(row, status="ok")

    # -- the summary -----------------------------------------------------

    def _ordered_rows(self) -> list[SummaryRow]:
        return [self.rows[v] for v in self.videos if v in self.rows]

    def _write_summary(self) -> None:
        write_summary(self.summary_path, self._ordered_rows())

    def _counts(self) -> dict[str, int]:
        rows = self.rows.values()
        return {"done": sum(r.fine for r in rows), "failed": sum(not r.fine for r in rows)}


def check_out_dir(out_dir: Path) -> None:
    """--out is a folder (or can be made) that this user can write in."""
    check_output_folder(out_dir, "--out")
    if out_dir.is_dir() and not os.access(out_dir, os.W_OK | os.X_OK):
        raise MDHRError(f"--out: cannot write in {out_dir} (permission denied or read-only); "
                        "choose a writable output folder")
