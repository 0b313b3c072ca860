"""mdhr-bench and mdhr-parity."""
from __future__ import annotations

import json
from pathlib import Path

import click

from mdhr_bench.backends import parse_backends
from mdhr_bench.bench import BenchOptions, run_benchmark
from mdhr_bench.markdown import bench_markdown, parity_markdown
from mdhr_bench.parity import ParityOptions, run_parity
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.cli.common import run_reporting_errors, say, verbose_option
from mdhr_runtime.files.outputs import check_distinct, check_run_paths, remove_stale_staging, staged_files

# mdhr-parity's exit status when a backend breaks tolerance (2 is a user
# error, 1 a bug: see mdhr_runtime.cli.common).
EXIT_PARITY_FAILED = 3

BACKEND_HELP = ("Comma-separated backends: torch, torch-bf16, torch-fp16, onnxruntime, onnxruntime-cuda, "
                "onnxruntime-fp16, onnxruntime-tensorrt, tensorrt, openvino, openvino-bf16, int8. Those that "
                "cannot run here are reported as skipped, with the reason.")
model_option = click.option("--model", required=True, type=click.Path(path_type=Path),
                            help="Bundle folder written by mdhr-export.")
ckpt_option = click.option("--ckpt", type=click.Path(path_type=Path),
                           help="The checkpoint the bundle was exported from (for the PyTorch backends).")
threads_option = click.option("--threads", type=int, help="CPU threads for PyTorch and ONNX Runtime "
                              "[default: every usable core].")


def check_paths(outputs: dict[str, Path | None], inputs: dict[str, Path | None]) -> None:
    """Before any backend loads: inputs readable, outputs writable and
    distinct; staging left by a killed run removed."""

    files = {what: path for what, path in inputs.items() if what != "--model"}
    check_run_paths(outputs, files)
    load_bundle(inputs["--model"])
    check_distinct(outputs, inputs)
    for target in outputs.values():
        if target is not None:
            remove_stale_staging(target, say)


def write_reports(*reports: tuple[Path | None, str]) -> None:
    """Write every (path, text) report whose path is given, all or none."""
    with staged_files([target for target, _ in reports]) as staged:
        for path, (_, text) in zip(staged, reports):
            if path is not None:
                path.write_text(text, encoding="utf-8")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@model_option
@ckpt_option
@click.option("--backends", help=BACKEND_HELP + " [default: all]")
@click.option("--batch", type=int, help="Clips per call [default: the bundle's; exported backends only "
              "run the bundle's static batch].")
@click.option("--warmup", default=3, show_default=True, help="Untimed calls before timing.")
@click.option("--iters", default=20, show_default=True, help="Timed calls per backend.")
@threads_option
@click.option("--video", type=click.Path(path_type=Path), help="Also time the whole runtime pipeline "
              "(decode, detect, preprocess, model) on this video, in both window modes.")
@click.option("--stream", is_flag=True, help="Also time streaming: frame stage, clip stage, one new frame "
              "at stride 1, and the whole clip recomputed per frame (JSON results with \"mode\": \"stream\").")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Write the report as JSON here.")
@click.option("--markdown", "markdown_out", type=click.Path(path_type=Path), help="Write the table as markdown here.")
@verbose_option
def bench_main(model, ckpt, backends, batch, warmup, iters, threads, video, stream, json_out, markdown_out,
               verbose):
    """Time every backend on the same clips: latency per call (p50, p90,
    p99, mean, std), clips/s and frames/s, load time, peak memory, and the
    speed-up against PyTorch eager float32. Each backend runs in a process of
    its own. The markdown table is printed; --json keeps everything.

    More: docs/benchmarks.md.

    \b
    Example:
      mdhr-bench --model bundles/bp4d --ckpt BP4D_resnet.pth --json bench.json --markdown bench.md
    """

    def work():
        check_paths({"--json": json_out, "--markdown": markdown_out},
                    {"--model": model, "--ckpt": ckpt, "--video": video})
        options = BenchOptions(model=model, ckpt=ckpt, backends=parse_backends(backends), batch=batch,
                               warmup=warmup, iters=iters, threads=threads, video=video, stream=stream)
        report = run_benchmark(options, say)
        table = bench_markdown(report)
        write_reports((json_out, json.dumps(report, indent=2) + "\n"), (markdown_out, table))
        click.echo(table)

    run_reporting_errors(work, verbose)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@model_option
@ckpt_option
@click.option("--video", type=click.Path(path_type=Path), help="Compare on the face clips of this video "
              "(real faces exercise the temporal branch as random inputs cannot).")
@click.option("--backends", help=BACKEND_HELP + " [default: all but the reference]")
@click.option("--image-list", type=click.Path(path_type=Path), help="Labelled set: image-path list in the "
              "official format (e.g. DISFA_test_path_fold1.txt).")
@click.option("--label-list", type=click.Path(path_type=Path), help="Labelled set: label list in the official "
              "format (e.g. DISFA_test_label_fold1.txt; -1 = unlabelled).")
@click.option("--image-root", type=click.Path(path_type=Path), help="Folder the listed image paths are "
              "relative to [default: img/ (BP4D) or img_o/ (DISFA) beside the lists, else their folder].")
@click.option("--fp32-tolerance", default=1e-4, show_default=True,
              help="Largest AU score error allowed for float32 backends.")
@click.option("--min-agreement", default=0.99, show_default=True, help="Smallest decision agreement allowed "
              "for reduced-precision backends (AU at threshold, AU at median, region argmax).")
@click.option("--max-clips", type=int, help="Use at most this many clips of the video.")
@threads_option
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Write the report as JSON here.")
@verbose_option
def parity_main(model, ckpt, video, backends, image_list, label_list, image_root, fp32_tolerance,
                min_agreement, max_clips, threads, json_out, verbose):
    """Compare each backend with the reference (PyTorch float32 with --ckpt,
    else the fp32 ONNX on ONNX Runtime CPU) on the same clips: AU score
    errors, decision agreement at the threshold and at each AU's median
    score, region argmax agreement, rank correlation, per-AU F1 against the
    reference's decisions; with a labelled set, per-AU and mean F1 against
    ground truth. Exits with status 3 when a backend breaks tolerance.

    More: docs/benchmarks.md.

    \b
    Example:
      mdhr-parity --model bundles/disfa --ckpt DISFA_resnet.pth --video face.mp4 --json parity.json
    """

    def work():
        check_paths({"--json": json_out}, {"--model": model, "--ckpt": ckpt, "--video": video,
                                           "--image-list": image_list, "--label-list": label_list,
                                           "--image-root": image_root})
        options = ParityOptions(model=model, ckpt=ckpt, video=video,
                                backends=None if backends is None else parse_backends(backends),
                                image_list=image_list, label_list=label_list, image_root=image_root,
                                fp32_tolerance=fp32_tolerance, min_agreement=min_agreement,
                                max_clips=max_clips, threads=threads)
        report = run_parity(options, say)
        write_reports((json_out, json.dumps(report, indent=2) + "\n"))
        click.echo(parity_markdown(report))
        return 0 if report["passed"] else EXIT_PARITY_FAILED

    run_reporting_errors(work, verbose)
