"""What float32 islands buy under FP16, and the verdict, written to the card.

``python -m scripts.bundles_fp16_islands BUNDLE --video FACES.mp4`` measures,
against the fp32 ONNX on ONNX Runtime and on the video's face clips:

- emulated FP16 (``scripts.bundles_bf16_islands``' emulation with IEEE half
  rounding: every convolution's and matrix product's inputs, weights and
  outputs rounded to fp16, float32 accumulation, as tensor cores compute)
  with nothing, the frame differences, the region modelling, or both kept
  float32;
- the FP16 graphs on ONNX Runtime's CPU provider (weights and tensors
  between operators in fp16, see ``mdhr_export.fp16``) without islands and
  with the frame differences in float32 (the graph earlier exports wrote).

and records the report in the bundle's card as ``fp16_islands``, with which
islands are worth keeping by ``RULE``.  Needs the fp32 graph (a bundle
exported with ``--target cpu`` or ``all``) and OpenVINO.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from mdhr_export import fp16 as fp16_tools
from mdhr_runtime.backends.runners import OnnxRuntimeRunner
from mdhr_runtime.bundle import load_bundle, write_card
from scripts.bundles_bf16_islands import face_clips, fp32_reference, run_emulated, summarise

CARD_KEY = "fp16_islands"
# An island is kept only where it buys at least this much over fp16 everywhere.
RULE = {"median_decision_agreement": 0.002, "rank_correlation_min": 0.002}
NOTHING = "nothing"
KEPT_SETS = {NOTHING: (), "frame differences": ("frame_differences",), "region modelling": ("region_modelling",),
             "frame differences and region modelling": ("frame_differences", "region_modelling")}
ONNXRUNTIME_SETS = (NOTHING, "frame differences")
EMULATION = ("OpenVINO in float32 with every convolution's and matrix product's inputs, weights and outputs rounded "
             "to IEEE half (subnormals included, overflow not), float32 accumulation")  # the ONNX's islands are single nodes: the frame differences


def buys(kept: dict, nothing: dict) -> dict:
    """What keeping an island set float32 buys over fp16 everywhere."""
    return {measure: round(kept[measure] - nothing[measure], 6) + 0.0 for measure in RULE}  # + 0.0: no -0.0


def worth_keeping(gain: dict) -> bool:
    return any(gain[measure] >= needed for measure, needed in RULE.items())


def verdict(emulated: dict) -> dict:
    """The smallest island set that buys what ``RULE`` asks, judged on the
    emulation (the closer stand-in for an FP16 engine); none if none does."""
    gains = {label: buys(emulated[label], emulated[NOTHING]) for label in KEPT_SETS if label != NOTHING}
    worth = [label for label in sorted(gains, key=lambda label: len(KEPT_SETS[label])) if worth_keeping(gains[label])]
    keep = worth[0] if worth else NOTHING
    return {"rule": {"keep an island where it buys at least": RULE}, "buys": gains,
            "keep_fp32": list(KEPT_SETS[keep])}


def onnxruntime_fp16(bundle, clips: list, reference: dict, keep_nodes: list[str], folder: Path) -> dict:
    """The FP16 graph of the bundle's fp32 ONNX (``keep_nodes`` float32) on
    ONNX Runtime's CPU provider."""
    from mdhr_export import isolated

    target = folder / "model_fp16.onnx"
    isolated.run_isolated(isolated.to_fp16, bundle.artifact("onnx"), keep_nodes, target, None)
    write_card(folder, {**bundle.card.to_json(), "artifacts": {"onnx_fp16": target.name}})
    trial = load_bundle(folder)
    runner = OnnxRuntimeRunner(trial, "fp16", providers=["CPUExecutionProvider"])
    try:
        from mdhr_export.parity import concat

        outputs = concat([runner.infer(c) for c in clips])
    finally:
        runner.close()
        target.unlink()
    return summarise(reference, outputs, bundle)


def measure(bundle_dir: Path, video: Path, max_clips: int | None = None, say=print) -> dict:
    bundle = load_bundle(bundle_dir)
    clips = face_clips(bundle, video, max_clips)
    reference = fp32_reference(bundle, clips)
    islands = bundle.card.islands
    emulated = {}
    for label, parts in KEPT_SETS.items():
        outputs, rounded = run_emulated(bundle, clips, {part: islands[part] for part in parts}, "fp16")
        emulated[label] = {"rounded_ops": rounded, **summarise(reference, outputs, bundle)}
        say(f"emulated fp16, {label} fp32: {json.dumps(emulated[label])}")
    onnxruntime = {}
    with tempfile.TemporaryDirectory(dir=bundle.root.parent) as folder:
        for label in ONNXRUNTIME_SETS:
            nodes = [node for part in KEPT_SETS[label] for node in islands[part]]
            onnxruntime[label] = onnxruntime_fp16(bundle, clips, reference, nodes, Path(folder))
            say(f"onnxruntime fp16, {label} fp32: {json.dumps(onnxruntime[label])}")
    return {"reference": "onnxruntime-fp32-cpu", "video": Path(video).name, "clips": len(clips),
            "frames": len(clips) * bundle.batch * bundle.frames,
            "emulated": {"method": EMULATION, "kept_fp32": emulated},
            "onnxruntime_cpu": {"method": fp16_tools.CPU_EMULATION, "kept_fp32": onnxruntime},
            **verdict(emulated)}


def record(bundle_dir: Path, report: dict) -> None:
    bundle = load_bundle(bundle_dir)
    write_card(bundle.root, {**bundle.card.to_json(), CARD_KEY: report})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--video", type=Path, required=True)
    parser.add_argument("--max-clips", type=int)
    args = parser.parse_args()
    report = measure(args.bundle, args.video, args.max_clips)
    record(args.bundle, report)
    print(f"kept fp32 under fp16: {', '.join(report['keep_fp32']) or 'nothing'}; written to the card as {CARD_KEY}")


if __name__ == "__main__":
    main()
