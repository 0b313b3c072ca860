"""Score a corpus on Ray and write its outputs: the job behind ``mdhr-batch``.

``run_corpus`` checks everything that can be known before work (options,
the bundle, the output folder, the inputs), runs the job (``batch/jobs.py``)
and writes the reports and the summary JSON asked for.  An interrupt leaves
the job as ``BatchJob`` leaves it (every file whole or gone) and propagates."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from mdhr.errors import InputError, param
from mdhr_runtime.backends.gates import forced_warning
from mdhr_runtime.batch.corpus import SKIPPED, expand_inputs
from mdhr_runtime.batch.jobs import BatchJob, BatchOptions, SummaryRow, check_out_dir
from mdhr_runtime.bundle import Bundle, load_bundle
from mdhr_runtime.checks import check_faces
from mdhr_runtime.files.atomic import write_atomically
from mdhr_runtime.files.outputs import check_output_file, is_stdout
from mdhr_runtime.results.index import write_corpus_reports
from mdhr_runtime.results.provenance import Provenance, facts_beside, is_facts_file, write_facts_beside
from mdhr_runtime.windows.streams import WindowPlan

Notify = Callable[[str], None]


@dataclass
class CorpusOutcome:
    """What a corpus job did: one summary row per video."""

    rows: list[SummaryRow]
    out_dir: Path
    tasks_run: int = 0
    written: list[Path] = field(default_factory=list)  # the index and the JSON, where asked for

    @property
    def ok(self) -> int:
        return sum(r.fine for r in self.rows)

    @property
    def all_ok(self) -> bool:
        return self.ok == len(self.rows)

    def as_json(self) -> dict:
        return {"out": str(self.out_dir), "videos": len(self.rows), "ok": self.ok, "tasks_run": self.tasks_run,
                "rows": [asdict(r) for r in self.rows]}


def check_corpus(inputs: list[str], options: BatchOptions, json_out: Path | None = None) -> list[Path]:
    """Everything refused before work, in one line; the videos to score."""
    try:
        import ray  # noqa: F401  (Ray is the batch extra's)
    except ImportError:
        raise InputError("mdhr-batch needs Ray: pip install 'mdhr-toolkit[batch]'") from None
    o = options
    if is_stdout(o.out_dir):
        raise InputError(f"{param('out_dir')} - : mdhr-batch writes a folder (a CSV per video and summary.csv), not "
                         f"standard output; give a folder ({param('json_out')} - prints the summary on standard output)")
    if any(is_stdout(argument) or argument == "@-" for argument in inputs):
        raise InputError(f"{param('inputs')} - (standard input) is not supported: give video files, folders, glob "
                         "patterns or @list.txt (for a file named -, write ./-)")
    check_faces(o.faces, o.min_face)
    if o.faces == "all" and o.segment_frames is not None:
        raise InputError(f"{param('faces')} all scores whole videos: face ids cannot be joined across segments yet; "
                         f"drop {param('segment_frames')} (or use {param('faces')} largest)")
    WindowPlan.make(o.windows, load_bundle(o.bundle_dir).frames, o.hop)  # the hop, before any work
    check_out_dir(o.out_dir)
    for target, name in ((json_out, "json_out"), (o.report, "report")):
        if target is not None and not is_stdout(target):
            check_output_file(target, param(name))
    if is_stdout(o.report):
        raise InputError(f"{param('report')} - : the index is an HTML page; give a file name")
    videos = expand_inputs(list(inputs))
    if not videos:
        raise InputError(f"no videos found in {' '.join(inputs)}; give video files, folders of videos, glob "
                         "patterns or @list.txt")
    return videos


def run_corpus(inputs: list[str], options: BatchOptions, json_out: Path | None = None,
               notify: Notify = lambda line: None, on_job: Callable[[BatchJob], None] = lambda job: None
               ) -> CorpusOutcome:
    """Score every video of ``inputs``; ``on_job`` sees the job before it
    runs (a command keeps it to say, after an interrupt, how it ended)."""
    videos = check_corpus(inputs, options, json_out)
    job = BatchJob(videos, options, notify)  # loads and hashes the bundle: refuses a bad one here
    warning = forced_warning(job.bundle, options.backend)
    if warning:
        notify(warning)
    on_job(job)
    outcome = CorpusOutcome(job.run(), options.out_dir, job.work_done)
    provenance = _provenance(options, job.bundle)
    record_facts(outcome.rows, options.out_dir, provenance)
    if options.report is not None:
        outcome.written.append(write_corpus_reports(job.summary_rows(), options.out_dir, options.report, provenance,
                                                    notify))
    if json_out is not None:
        text = json.dumps(outcome.as_json(), indent=1) + "\n"
        if is_stdout(json_out):
            print(text, end="", flush=True)
        else:
            outcome.written.append(write_atomically(json_out, text.encode()))
    return outcome


def _provenance(options: BatchOptions, bundle: Bundle) -> Provenance:
    """The job's facts, once, for every writer (each CSV's run facts, the
    reports and the index)."""
    return Provenance(bundle=str(options.bundle_dir), dataset=bundle.dataset, backbone=bundle.backbone,
                      untrained=bundle.untrained,
                      backend=options.backend + (" (chosen per worker)" if options.backend == "auto" else ""),
                      windows=WindowPlan.make(options.windows, bundle.frames, options.hop).describe(),
                      faces=options.faces, min_face=options.min_face if options.faces == "all" else None,
                      threshold=bundle.threshold, quality_flags=asdict(options.quality))


def record_facts(rows, out_dir: Path, provenance: Provenance) -> None:
    """Each CSV's run facts beside it.  A skipped video keeps those of the run
    that wrote it, where they are; a file at that name that is not run facts
    (the user's own, a link, a folder) is never replaced: that CSV has none."""
    for row in rows:
        target = facts_beside(out_dir / row.output) if row.output else None
        if target is None or (row.status == SKIPPED and target.exists()):
            continue
        if not os.path.lexists(target) or is_facts_file(target):
            write_facts_beside(out_dir / row.output, provenance.replace(input=row.path, video_fps=row.fps))
