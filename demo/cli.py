"""mdhr-demo: export (once) an untrained bundle and run mdhr-run on the
sample video, so a newcomer sees every output without a checkpoint."""
from __future__ import annotations

import os
import time
from pathlib import Path

import click

from mdhr.errors import MDHRError
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.cli.common import run_reporting_errors, say, verbose_option
from mdhr_runtime.cli.run import report_run
from mdhr_runtime.files.outputs import check_output_folder
from mdhr_runtime.runs.video import RunOptions, run_video

SAMPLE_VIDEO = Path(__file__).parent / "data" / "sample.mp4"
# The smallest sensible bundle: ResNet-50 (the lighter backbone), DISFA's 8
# AUs and 4-frame clips (the short-clip extension): a quarter of the
# official 16-frame clip's work per window, and the quickest export.
DEMO_BUNDLE = {"dataset": "DISFA", "backbone": "resnet", "frames": 4}
DEMO_BUNDLE_NAME = "demo-DISFA-resnet-T4-untrained"
OUTPUT_NAMES = {"csv": "sample.csv", "plot": "sample_timeline.png", "report": "report.html"}


def default_cache() -> Path:
    """$XDG_CACHE_HOME/mdhr-toolkit, else ~/.cache/mdhr-toolkit."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mdhr-toolkit"


def cached_bundle_problem(folder: Path) -> str | None:
    """Why the bundle in the cache cannot be reused, or None if it can."""

    if not folder.exists():
        return "none cached yet"
    try:
        bundle = load_bundle(folder)
    except MDHRError as error:
        return str(error)
    found = {"dataset": bundle.dataset, "backbone": bundle.backbone, "frames": bundle.frames}
    if found != DEMO_BUNDLE or not bundle.untrained:
        return f"it is not the demo's bundle ({found}, untrained={bundle.untrained})"
    return None


def ensure_bundle(cache: Path) -> Path:
    """The demo's bundle: reused from the cache, else exported into it (the
    export stages the whole folder and renames it, so a cache is never left
    half-written)."""
    folder = cache / DEMO_BUNDLE_NAME
    problem = cached_bundle_problem(folder)
    if problem is None:
        say(f"bundle: reusing {folder}")
        return folder
    try:
        from mdhr_export.pipeline import ExportOptions, Progress, export_bundle
    except ModuleNotFoundError as error:
        raise MDHRError(f"the first mdhr-demo run exports its bundle, which needs PyTorch ({error.name} is not "
                        "installed): pip install -e '.[export]'") from None
    say(f"bundle: exporting an untrained {DEMO_BUNDLE['dataset']} ResNet-50 bundle with "
        f"{DEMO_BUNDLE['frames']}-frame clips to {folder} ({problem}); later runs reuse it")
    started = time.perf_counter()
    cache.mkdir(parents=True, exist_ok=True)
    options = ExportOptions(out=folder, ckpt=None, random_init=True, **DEMO_BUNDLE)
    export_bundle(options, Progress(say=lambda line: say(f"  {line}")))
    say(f"bundle: exported in {time.perf_counter() - started:.0f} s")
    return folder


def run_sample(bundle: Path, out: Path, verbose: bool) -> int:
    """Score the sample video with mdhr-run's own job (the same code path and
    answer as running it by hand); returns mdhr-run's exit status."""
    options = RunOptions(model=bundle, input=SAMPLE_VIDEO, out=out / OUTPUT_NAMES["csv"],
                         plot=out / OUTPUT_NAMES["plot"], report=out / OUTPUT_NAMES["report"])
    return report_run(options, run_video(options, notify=say, verbose=verbose))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", type=click.Path(path_type=Path), default=Path("mdhr-demo"), show_default=True,
              help="Folder for the outputs: sample.csv, sample_timeline.png and report.html.")
@click.option("--cache", type=click.Path(path_type=Path), default=None,
              help="Folder that keeps the demo's bundle between runs [default: $XDG_CACHE_HOME/mdhr-toolkit, "
                   "else ~/.cache/mdhr-toolkit].")
@verbose_option
def main(out, cache, verbose):
    """Run the whole job once, offline: export an untrained bundle (first run
    only, a few minutes; it needs the export extra), score the 3-second sample
    video that ships with the toolkit (a real face photo moved over a
    background, with a stretch where the face is away) exactly as mdhr-run
    does, and write the CSV, the timeline plot and the HTML report.

    The model is untrained (no trained MDHR weights are public): the scores
    show the pipeline working, not facial actions. Export a trained checkpoint
    with mdhr-export --ckpt to get meaningful ones. More: docs/demo.md.

    \b
    Example:
      mdhr-demo --out mdhr-demo
    """
    def work():
        check_output_folder(out, "--out")
        cache_folder = cache or default_cache()
        if cache_folder.exists() and not cache_folder.is_dir():
            raise MDHRError(f"--cache {cache_folder} is not a folder; give a folder for the demo's bundle")
        bundle = ensure_bundle(cache_folder)
        out.mkdir(parents=True, exist_ok=True)
        say(f"scoring {SAMPLE_VIDEO.name}, the sample video shipped with the toolkit")
        code = run_sample(bundle, out, verbose)
        if code:
            return code
        for name in OUTPUT_NAMES.values():
            click.echo(out / name)
        say("note: the model is UNTRAINED (random weights), so these scores mean nothing; export a trained "
            "checkpoint with mdhr-export --ckpt to get real ones")

    run_reporting_errors(work, verbose)
