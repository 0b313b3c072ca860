"""``export_bundle``: checkpoint -> static ONNX (+FP16, +engine) -> bundle,
with a parity report; each step timed."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Callable

import numpy as np
import onnx
import torch

import mdhr
from mdhr.aus import DECISION_THRESHOLD, IMAGE_MEAN, IMAGE_STD
from mdhr.errors import InputError, MDHRError, param
from mdhr_export import fp16 as fp16_tools
from mdhr_export import graph, isolated, parity
from mdhr_export import stages as stage_graphs
from mdhr_export import weights as shared_weights
from mdhr_export.staging import Written, check_bundle_target, staged_folder
from mdhr_runtime.backends.runners import OnnxRuntimeRunner
from mdhr_runtime.backends.selection import tensorrt_unavailable_reason
from mdhr_runtime.bundle import DEFAULT_TARGET, TARGET_ARTIFACTS, TARGETS, load_bundle, seal, write_card
from mdhr_runtime.card import Card, InputSpec, Source
from mdhr_runtime.files.outputs import check_input, remove_stale_staging

ONNX_FILE, ONNX_FP16_FILE = "model.onnx", "model_fp16.onnx"
PARITY_REFERENCE_FILE = "parity_reference.npz"
# Static shapes beyond these need more memory than an export on a
# workstation has (the parity check runs the full model on several batches);
# run more batches of the official 16 frames instead.
MAX_BATCH, MAX_FRAMES = 16, 64


@dataclass
class ExportOptions:
    out: Path
    ckpt: Path | None = None
    dataset: str | None = None
    backbone: str | None = None
    fp16: bool = False
    batch: int = 1
    frames: int = 16
    opset: int = graph.DEFAULT_OPSET
    random_init: bool = False
    int8: bool = False
    calibrate: Path | None = None  # face footage: calibrates --int8 and judges the reduced-precision gates
    seed: int = 0
    verbose: bool = False
    target: str = DEFAULT_TARGET

    @property
    def writes_fp16(self) -> bool:
        """The GPU's graphs are what --target gpu is for; --fp16 asks for them beside the CPU's."""
        return self.target == "gpu" or self.fp16


@dataclass
class Progress:
    """Step-by-step progress with timings; ``say`` prints a line."""

    say: Callable[[str], None] = lambda line: None
    timings: dict[str, float] = field(default_factory=dict)

    def step(self, name: str, work: Callable):
        self.say(f"{name} ...")
        start = time.perf_counter()
        result = work()
        isolated.release_freed_memory()
        self.timings[name] = round(time.perf_counter() - start, 2)
        self.say(f"{name} done in {self.timings[name]:.1f} s")
        return result


def validate(options: ExportOptions) -> None:
    """Everything checkable before the model loads: options, the
    checkpoint file, the --out folder."""
    if options.random_init == (options.ckpt is not None):
        raise InputError(f"give {param('ckpt')} (a checkpoint) to export a trained model, or {param('random_init')} "
                         f"(and {param('dataset')}, {param('backbone')}) to try the pipeline with an untrained one")
    if options.opset not in graph.OPSETS:
        raise InputError(f"{param('opset')} {options.opset} is not supported; choose {graph.OPSETS.start}.."
                         f"{graph.OPSETS.stop - 1} (default {graph.DEFAULT_OPSET})")
    if not 1 <= options.batch <= MAX_BATCH:
        raise InputError(f"{param('batch')} must be 1 to {MAX_BATCH}, got {options.batch}")
    if not 2 <= options.frames <= MAX_FRAMES:
        raise InputError(f"{param('frames')} must be 2 to {MAX_FRAMES} (MDHR differences consecutive frames; the official "
                         f"clip is 16), got {options.frames}")
    if options.ckpt is not None:
        check_input(options.ckpt, "checkpoint", folder_ok=False)
    if options.target not in TARGETS:
        raise InputError(f"unknown {param('target')} {options.target!r}: choose one of {', '.join(TARGETS)}")
    if options.target == "cpu" and options.fp16:
        raise InputError(f"{param('fp16')} writes the graphs TensorRT engines are built from, which {param('target')} "
                         f"cpu leaves out; give {param('target')} gpu or all with {param('fp16')}")
    if options.target == "gpu" and (options.int8 or options.calibrate is not None):
        raise InputError(f"{param('int8')} and {param('calibrate')} are for the CPU runners, which {param('target')} "
                         f"gpu leaves out; give {param('target')} cpu or all with them")
    if options.int8 and options.calibrate is None:
        raise InputError(f"{param('int8')} needs {param('calibrate')} VIDEO_OR_FOLDER: real face footage (a video, a folder of frames "
                         "or a folder of videos) to calibrate the INT8 model on and to measure its agreement")
    if options.calibrate is not None:
        check_input(options.calibrate, "calibration footage", folder_ok=True)
        from mdhr_export.int8 import check_tools

        check_tools(options.int8)
    target = check_bundle_target(options.out)
    if options.ckpt is not None and Path(options.ckpt).absolute().is_relative_to(target):
        raise InputError(f"the checkpoint {options.ckpt} lies inside {param('out')} {options.out}, which the export "
                         f"replaces; choose another {param('out')} folder")


def load(options: ExportOptions) -> tuple[mdhr.MDHR, str | None]:
    if options.random_init:
        torch.manual_seed(options.seed)
        return mdhr.build_model(options.dataset or "BP4D", options.backbone or "resnet"), None
    model = mdhr.load_model(options.ckpt, options.dataset, options.backbone)
    return model, sha256(options.ckpt)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_card(model: mdhr.MDHR, options: ExportOptions, checkpoint_sha256: str | None) -> Card:
    """The card's identity: what the model is, before any file is written."""
    return Card(
        dataset=model.dataset, backbone=model.backbone, au_names=tuple(model.aus.au_names),
        threshold=DECISION_THRESHOLD,
        input=InputSpec(graph.INPUT_NAME, (options.batch, options.frames, 3, 224, 224), IMAGE_MEAN, IMAGE_STD),
        outputs=tuple(graph.output_names(model)), regions=tuple((r.name, r.num_classes) for r in model.aus.regions),
        untrained=checkpoint_sha256 is None, target=options.target,
        source=Source(checkpoint_sha256, torch.__version__, onnx.__version__, options.opset),
        artifacts=MappingProxyType({}))


def torch_outputs(model: mdhr.MDHR, clips: list[np.ndarray]) -> dict[str, np.ndarray]:
    wrapper = graph.ClipOutputs(model).eval()
    names = graph.output_names(model)
    runs = []
    with torch.no_grad():
        for batch in clips:
            runs.append({n: o.numpy() for n, o in zip(names, wrapper(torch.from_numpy(batch)))})
    return parity.concat(runs)


def export_bundle(options: ExportOptions, progress: Progress | None = None) -> Card:
    """Run the whole export; returns the card written to ``options.out``."""
    progress = progress or Progress()
    validate(options)
    remove_stale_staging(options.out, progress.say)
    model, checksum = progress.step("load", lambda: load(options))
    identity = make_card(model, options, checksum)
    with staged_folder(options.out) as staging:
        recipe = isolated.ModelRecipe.save(model, staging / ".weights.pt")
        raw = staging / f".unsimplified-{ONNX_FILE}"
        weights = shared_weights.WeightsFile(staging / shared_weights.FILES["fp32"])
        _sensitive, islands = progress.step("export", lambda: isolated.run_isolated(
            isolated.export_model, recipe, options.batch, options.frames, options.opset, options.verbose, raw))
        weights = progress.step("simplify", lambda: isolated.run_isolated(
            isolated.simplify, raw, staging / ONNX_FILE, identity.identity(), weights))
        card = write_card(staging, replace(identity, islands={part: tuple(nodes) for part, nodes in islands.items()}),
                          {"onnx": ONNX_FILE, shared_weights.KINDS["fp32"]: weights.path.name})

        clips = parity.parity_clips(options.batch, options.frames, options.seed)
        reference = progress.step("pytorch", lambda: torch_outputs(model, clips))
        checks, onnx_fp32 = progress.step("parity", lambda: fp32_parity(raw, staging, clips, reference))
        raw.unlink()
        stages = progress.step("stages", lambda: stage_graphs.write_stages(
            recipe, model, options.frames, options.opset, staging, card, clips, reference, weights,
            faster_graphs=options.target != "gpu", chatty=options.verbose))
        recipe.weights.unlink()
        card = seal(staging, replace(card, stages=stages.section).with_checks(**checks, stages_fp32_cpu=stages.report),
                    stages.files)
        if options.writes_fp16:
            card = fp16_steps(staging, card, clips, onnx_fp32, options.out, progress)
        if options.calibrate is not None:
            from mdhr_export.int8 import reduced_precision_step

            card = progress.step("int8" if options.int8 else "gates", lambda: reduced_precision_step(
                staging, card, Path(options.calibrate), options.int8, progress.say))
        if options.target == "gpu":
            card = seal(staging, card, keep_for_gpu(staging, card, onnx_fp32))
        written = write_card(staging, replace(card, timings=MappingProxyType(dict(progress.timings))))
    return written


def fp16_steps(staging: Path, card: Card, clips, onnx_fp32: dict[str, np.ndarray], out: Path,
               progress: Progress) -> Card:
    """The FP16 graphs (the model's and the stages', one weights file) and,
    where TensorRT and a GPU are here, the engine: ``card`` with them."""
    weights16 = shared_weights.WeightsFile(staging / shared_weights.FILES["fp16"])
    model16 = progress.step("fp16", lambda: export_fp16(staging, card, clips, onnx_fp32, weights16))
    card = seal(staging, card.with_reports(fp32_nodes=model16.section).with_checks(fp16=model16.report),
                model16.files)
    stages16 = progress.step("stages_fp16", lambda: stage_graphs.write_fp16_stages(
        staging, card, clips, onnx_fp32, weights16))
    card = seal(staging, replace(card, stages=stages16.section).with_checks(stages_fp16=stages16.report),
                stages16.files)
    card = card.with_reports(fp16=fp16_tools.describe(staging, card))
    return progress.step("engine", lambda: maybe_build_engine(staging, card, out, progress.say))


def keep_for_gpu(staging: Path, card: Card, onnx_fp32: dict[str, np.ndarray]) -> dict[str, str | None]:
    """--target gpu: the fp32 graphs (every check is done) give way to the
    fp32 ONNX's outputs on the parity clips, which mdhr-build checks the
    engines against; returns the files that changed."""
    np.savez_compressed(staging / PARITY_REFERENCE_FILE, **onnx_fp32)
    gone = [kind for kind in TARGET_ARTIFACTS["cpu"] if kind in card.artifacts]
    for kind in gone:
        (staging / card.artifacts[kind].name).unlink()
    return {**dict.fromkeys(gone), "parity_reference": PARITY_REFERENCE_FILE}


def fp32_parity(unsimplified_path: Path, staging: Path, clips,
                reference: dict[str, np.ndarray]) -> tuple[dict, dict[str, np.ndarray]]:
    """The fp32 ONNX in ONNX Runtime CPU against PyTorch's ``reference``: the report, and the
    ONNX outputs (the reference for reduced precision).  Raises (so no bundle
    is written) when it is not faithful.  The graph before simplification
    (``unsimplified_path``) is run too, to prove simplification changed nothing."""
    bundle = load_bundle(staging)
    runner = OnnxRuntimeRunner(bundle, providers=["CPUExecutionProvider"])
    simplified = parity.runner_outputs(runner, clips)
    runner.close()
    report = parity.compare(reference, simplified, DECISION_THRESHOLD)
    import onnxruntime as ort

    # Without ONNX Runtime's memory arena: no arena kept at its peak (the export's peak memory).
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False
    session = ort.InferenceSession(str(unsimplified_path), options, providers=["CPUExecutionProvider"])
    unsimplified = parity.concat([dict(zip(reference, session.run(list(reference), {graph.INPUT_NAME: c})))
                                  for c in clips])
    del session
    simplify_error = parity.compare(unsimplified, simplified, DECISION_THRESHOLD)
    problems = parity.fp32_failures(report) + [
        f"simplification: {p}" for p in parity.fp32_failures(simplify_error, au_tolerance=1e-5)]
    if problems:
        raise MDHRError("exported ONNX disagrees with PyTorch: " + "; ".join(problems)
                        + "; no bundle written (please report this with the checkpoint's configuration)")
    return {"clips": int(sum(c.shape[0] for c in clips)), "reference": "pytorch-fp32-cpu",
            "onnxruntime_fp32_cpu": report,
            "simplification_max_abs_error": simplify_error["au_max_abs_error"]}, simplified


def export_fp16(staging: Path, card: Card, clips, reference: dict[str, np.ndarray],
                weights: shared_weights.WeightsFile) -> Written[list[str]]:
    """Write the FP16 ONNX (its weights in ``weights``, updated) and measure
    it against ``reference``, the fp32 ONNX's outputs on the same ``clips``;
    its section is the nodes it keeps float32."""
    fp32_nodes = fp16_tools.kept_nodes(card.islands)
    weights.stored = isolated.run_isolated(
        isolated.to_fp16, staging / ONNX_FILE, fp32_nodes, staging / ONNX_FP16_FILE, weights).stored
    files = {"onnx_fp16": ONNX_FP16_FILE, shared_weights.KINDS["fp16"]: weights.path.name}
    write_card(staging, card.with_reports(fp32_nodes=fp32_nodes), files)
    bundle = load_bundle(staging)
    emulated = OnnxRuntimeRunner(bundle, "fp16", providers=["CPUExecutionProvider"])
    report = {"reference": "onnxruntime-fp32-cpu",
              "estimate_cpu": {"method": fp16_tools.CPU_EMULATION,
                               **parity.compare(reference, parity.runner_outputs(emulated, clips), card.threshold)},
              "measured_gpu": None}
    emulated.close()
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        gpu = OnnxRuntimeRunner(bundle, "fp16", providers=["CUDAExecutionProvider"])
        report["measured_gpu"] = {"backend": gpu.name,
                                  **parity.compare(reference, parity.runner_outputs(gpu, clips), card.threshold)}
        gpu.close()
    return Written(fp32_nodes, files, report)


def maybe_build_engine(staging: Path, card: Card, out: Path, say: Callable[[str], None]) -> Card:
    """``card`` with the FP16 engine where TensorRT and a GPU are here; an
    engine that fails its parity gate is left out (the ONNX bundle is still
    written)."""
    reason = tensorrt_unavailable_reason()
    if reason is not None:
        say(f"TensorRT engine not built here ({reason}); on the target GPU run: mdhr-build {out} --fp16")
        return card
    from mdhr_export.build import build_into

    try:
        return build_into(staging, card, "fp16")
    except MDHRError as e:
        say(f"TensorRT engine not kept: {e}")
        return card
