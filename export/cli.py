"""mdhr-export and mdhr-build."""
from __future__ import annotations

import json

import click

from mdhr.aus import AU_SETS, BACKBONES
from mdhr_runtime.backends.gates import summary
from mdhr_runtime.bundle import DEFAULT_TARGET, TARGETS
from mdhr_runtime.card import Card
from mdhr_runtime.cli.common import PATH, mdhr_command, run_reporting_errors, verbose_option


@mdhr_command("bundles.md", ["mdhr-export --ckpt BP4D_resnet.pth --out bundles/bp4d --fp16"])
@click.option("--ckpt", type=PATH, help="Checkpoint trained with the official MDHR code "
              "(bare state dict or {'state_dict': ...}, DataParallel prefixes accepted).")
@click.option("--out", required=True, type=PATH, help="Bundle folder to write "
              "(created; an existing bundle there is replaced only when the new one is complete).")
@click.option("--fp16", is_flag=True, help="Also write the FP16 graphs (float32 I/O) TensorRT engines are built from "
              "and, where TensorRT and a GPU are present, a TensorRT FP16 engine.")
@click.option("--target", type=click.Choice(TARGETS), default=DEFAULT_TARGET, show_default=True,
              help="What the bundle is for: cpu writes the fp32 graphs (and --int8's model), gpu the FP16 graphs "
              "engines are built from (implies --fp16), all both.")
@click.option("--dataset", type=click.Choice(list(AU_SETS)), help="Checked against the checkpoint "
              "(inferred when omitted); with --random-init, the AU set to build.")
@click.option("--backbone", type=click.Choice(list(BACKBONES)), help="Checked against the checkpoint "
              "(inferred when omitted); with --random-init, the backbone to build.")
@click.option("--batch", default=1, show_default=True, help="Static batch size (clips per run).")
@click.option("--frames", default=16, show_default=True, help="Static clip length T. The official model "
              "needs T >= 11; 2..10 use our zero-padded temporal average (an extension).")
@click.option("--opset", default=18, show_default=True, help="ONNX opset (18..23).")
@click.option("--int8", is_flag=True, help="Also write an INT8 model for the CPU (OpenVINO IR, calibrated with NNCF "
              "on --calibrate), the layer groups it keeps float32 found by measurement: the fastest candidate that "
              "passes the agreement gate at >= 1.2x ONNX Runtime fp32, else the best found, marked failing; every "
              "candidate's speed and agreement go in the card (int8.search); backend int8.")
@click.option("--calibrate", type=PATH, metavar="VIDEO_OR_FOLDER", help="Real face footage "
              "(a video, a folder of frames or of videos): calibrates --int8, and measures every reduced-precision "
              "CPU runner's agreement with fp32 on its face clips (written to the card; auto uses only runners that "
              "pass).")
@click.option("--random-init", is_flag=True, help="Export an untrained, randomly initialised model to try "
              "the pipeline without a checkpoint; the bundle is marked untrained.")
@verbose_option
def main(ckpt, out, fp16, target, dataset, backbone, batch, frames, opset, int8, calibrate, random_init, verbose):
    """Export an MDHR checkpoint to a deployable bundle: a static-shape ONNX
    model (input `clips` [B, T, 3, 224, 224], outputs `au_scores` [B, T, N]
    and `region_*` logits), its model card `mdhr.json`, and a parity report
    against PyTorch. The export fails, writing nothing, if ONNX Runtime does
    not reproduce PyTorch (AU error above 1e-4 or any region decision
    changed).

    Manual: mdhr-export --docs prints docs/bundles.md (installed with the package).
    """

    def work():
        from mdhr_export.pipeline import ExportOptions, Progress, export_bundle  # torch: see run_reporting_errors
        options = ExportOptions(out=out, ckpt=ckpt, dataset=dataset, backbone=backbone, fp16=fp16, batch=batch,
                                frames=frames, opset=opset, random_init=random_init, int8=int8,
                                calibrate=calibrate, verbose=verbose, target=target)
        card = export_bundle(options, Progress(say=lambda line: click.echo(line, err=True)))
        for line in export_summary(card, out, target, ckpt):
            click.echo(line)
        if verbose:
            click.echo(json.dumps(dict(card.timings)), err=True)

    run_reporting_errors(work, verbose)


def export_summary(card: Card, out, target: str, ckpt) -> list[str]:
    """What mdhr-export wrote, in a few lines: the bundle, its agreement
    with PyTorch, the FP16 estimate, each reduced-precision gate."""
    fp32 = card.parity.fp32
    status = "UNTRAINED model (random weights)" if card.untrained else f"checkpoint {ckpt}"
    size = sum(artifact.size for artifact in card.artifacts.values()) / 1e6
    lines = [f"wrote {out} (--target {target}, {size:.0f} MB): {card.dataset}/{card.backbone} {status}; "
             f"fp32 parity: AU max error {fp32.au_max_abs_error:.1e}, region argmax agreement "
             f"{100 * fp32.region_argmax_agreement:.0f}%"]
    est = card.parity.fp16
    if est is not None:
        lines.append(f"fp16 (CPU emulation): AU max error {est.au_max_abs_error:.1e}, decision agreement "
                     f"{100 * est.au_decision_agreement:.2f}%, region argmax agreement "
                     f"{100 * est.region_argmax_agreement:.1f}%")
    for backend, gate in card.parity.gates.items():
        lines.append(f"{backend}: " + (f"skipped ({gate.reason})" if not gate.measured else
                                       ("passed" if gate.passed else "FAILED") + " its agreement gate: "
                                       f"{summary(gate.described)}"))
    return lines


@mdhr_command("gpu.md", ["mdhr-build bundles/bp4d --fp16"])
@click.argument("bundle", type=PATH)
@click.option("--fp16/--fp32", default=True, show_default=True, help="Engine precision: --fp16 builds from "
              "model_fp16.onnx (FP16; the card's fp16 entry says what stays FP32), --fp32 from model.onnx. The engine is "
              "strongly typed: it computes in the types of the ONNX it is built from.")
@verbose_option
def build_main(bundle, fp16, verbose):
    """Build the TensorRT engine of an exported BUNDLE on this GPU machine,
    check it against the fp32 ONNX on ONNX Runtime (AU error, decisions at
    0.5 and at each AU's median, region argmax, rank correlation) and record
    the build and the check in the bundle's card. An engine that breaks
    tolerance is not kept (exit 2).

    Engines are tied to the GPU model and TensorRT version, so build on the
    machine that will run them. Needs `pip install 'mdhr-toolkit[gpu]'`
    (TensorRT 10.12 or newer, Polygraphy, the CUDA runtime).

    Manual: mdhr-build --docs prints docs/gpu.md (installed with the package).
    """
    def work():
        from mdhr_export.build import build_bundle_engine

        card = build_bundle_engine(bundle, "fp16" if fp16 else "fp32")
        built, report = card.engine_build, card.parity.tensorrt
        click.echo(f"wrote {bundle}/{card.artifacts['engine'].name} ({built.precision}, TensorRT {built.tensorrt}, "
                   f"{built.gpu}, {built.build_seconds:.0f} s); vs ONNX Runtime fp32: AU max error "
                   f"{report.au_max_abs_error:.1e}, decisions {100 * report.au_decision_agreement:.2f}% at "
                   f"the threshold and {100 * report.median_decision_agreement:.2f}% at the AU medians, "
                   f"region argmax {100 * report.region_argmax_agreement:.2f}%")

    run_reporting_errors(work, verbose, BUNDLE_FLAGS)


@mdhr_command("corpora.md", [
    "mdhr-triton bundles/bp4d triton-models",
    "docker run --gpus all -p 8000:8000 -p 8001:8001 -v $PWD/triton-models:/models \\",
    "  nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models"])
@click.argument("bundle", type=PATH)
@click.argument("repo", type=PATH)
@click.option("--instances", default=1, show_default=True, help="Model copies Triton runs concurrently.")
@click.option("--cpu", is_flag=True, help="Run the instances on CPU (KIND_CPU) instead of the GPU.")
@verbose_option
def triton_main(bundle, repo, instances, cpu, verbose):
    """Write a Triton Inference Server model repository for an exported bundle:
    its ONNX model (onnxruntime_onnx) and, where the bundle has one, its
    TensorRT engine (tensorrt_plan), each with a config.pbtxt.

    Manual: mdhr-triton --docs prints docs/corpora.md (installed with the package).
    """
    from mdhr_export.triton import write_repository

    def work():
        for folder in write_repository(bundle, repo, instances=instances, kind="KIND_CPU" if cpu else "KIND_GPU"):
            click.echo(f"wrote {folder}")

    run_reporting_errors(work, verbose, BUNDLE_FLAGS)


# the library's name for the BUNDLE argument of mdhr-build and mdhr-triton
BUNDLE_FLAGS = {"bundle_dir": "BUNDLE"}
