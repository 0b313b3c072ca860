"""A Triton Inference Server model repository from an exported bundle.

    REPO/
      mdhr_<dataset>_<backbone>/        platform onnxruntime_onnx
        config.pbtxt  au_names.txt  1/model.onnx  1/weights.bin (its external data)
      mdhr_<dataset>_<backbone>_trt/    platform tensorrt_plan (when the bundle has an engine)
        config.pbtxt  au_names.txt  1/model.plan

The bundle's graph has static shapes: input ``clips`` [B, T, 3, 224, 224]
(normalised RGB face crops, see the model card) and outputs ``au_scores``
[B, T, N] and ``region_*`` [B, T, k].  Triton batches only along a
variable first dimension, which a static graph lacks, so ``max_batch_size``
is 0, the dims are the whole shape and there is no ``dynamic_batching``:
each request is one model call of B clips (export with ``--batch`` to
change B).  Throughput comes from ``instance_group``: several copies of the
model run requests concurrently.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from mdhr.errors import MDHRError
from mdhr_export.staging import staged_folder
from mdhr_export.weights import files_of
from mdhr_runtime.bundle import Bundle, load_bundle
from mdhr_runtime.files.outputs import check_output_folder

# The ONNX Runtime backend can hand the graph to TensorRT itself; left as a
# comment because it needs a GPU build of Triton and builds engines at load.
TENSORRT_ACCELERATOR = """\
# On a GPU, ONNX Runtime can hand the graph to TensorRT in FP16 (engines are
# built when the model loads, minutes for MDHR). Uncomment to use it:
# optimization {
#   execution_accelerators {
#     gpu_execution_accelerator: [
#       {
#         name: "tensorrt"
#         parameters { key: "precision_mode" value: "FP16" }
#         parameters { key: "max_workspace_size_bytes" value: "4294967296" }
#       }
#     ]
#   }
# }
"""


def model_name(bundle: Bundle) -> str:
    return f"mdhr_{bundle.dataset}_{bundle.backbone}".lower()


def _tensor(name: str, dims, label: str | None = None) -> str:
    extra = f'\n    label_filename: "{label}"' if label else ""
    return f'  {{\n    name: "{name}"\n    data_type: TYPE_FP32\n    dims: [ {", ".join(map(str, dims))} ]{extra}\n  }}'


def config_text(bundle: Bundle, name: str, platform: str, instances: int, kind: str) -> str:
    """config.pbtxt for one model of the repository (protobuf text format,
    Triton's ModelConfig)."""
    B, T = bundle.batch, bundle.frames
    outputs = [_tensor("au_scores", [B, T, len(bundle.au_names)], label="au_names.txt")]
    outputs += [_tensor(f"region_{region}", [B, T, size]) for region, size in bundle.card.get("regions", {}).items()]
    lines = [
        f"# MDHR {bundle.dataset}/{bundle.backbone} from {bundle.root.name}: one request = {B} clip(s) of {T} "
        "frames,",
        "# normalised RGB face crops (pixel / 255, minus ImageNet mean, over std). au_scores are cosines;",
        f"# an AU is active at score >= {bundle.threshold}. Static shapes: no batching by Triton.",
        f'name: "{name}"',
        f'platform: "{platform}"',
        "max_batch_size: 0",
        "input [",
        _tensor(bundle.card["input"].get("name", "clips"), bundle.input_shape),
        "]",
        "output [",
        ",\n".join(outputs),
        "]",
        "instance_group [",
        f"  {{\n    count: {instances}\n    kind: {kind}\n  }}",
        "]",
    ]
    if bundle.untrained:
        lines.insert(0, "# WARNING: UNTRAINED model (exported with --random-init): its outputs are meaningless.")
    text = "\n".join(lines) + "\n"
    if platform == "onnxruntime_onnx":
        text += TENSORRT_ACCELERATOR
    return text


def check_new_or_empty(repo: Path) -> Path:
    repo = Path(repo).absolute()
    check_output_folder(repo, "REPO")
    if repo.exists() and any(repo.iterdir()):
        raise MDHRError(f"REPO {repo} exists and is not empty; give a new or empty folder")
    return repo


def write_repository(bundle_dir: str | Path, repo: str | Path, instances: int = 1, kind: str = "KIND_GPU") -> list[Path]:
    """Write ``repo`` (new or empty) whole or not at all; the model folders written."""
    bundle = load_bundle(bundle_dir)
    repo = check_new_or_empty(repo)
    if instances < 1:
        raise MDHRError(f"--instances must be at least 1, got {instances}")
    graph = bundle.artifact("onnx") or bundle.artifact("onnx_fp16")  # a --target gpu bundle has only the latter
    models = [("onnxruntime_onnx", [(graph, "model.onnx"), *((p, p.name) for p in files_of(bundle.root, graph)[1:])],
               "")]
    missing = [str(path) for path, _ in models[0][1] if not path.is_file()]
    if missing:
        raise MDHRError(f"{bundle.root}: incomplete bundle: {', '.join(missing)} missing; export the bundle again")
    engine = bundle.artifact("engine")
    if engine is not None and engine.is_file():
        models.append(("tensorrt_plan", [(engine, "model.plan")], "_trt"))
    written = []
    with staged_folder(repo, check=check_new_or_empty, option="REPO") as staging:
        for platform, files, suffix in models:
            name = model_name(bundle) + suffix
            folder = staging / name
            (folder / "1").mkdir(parents=True)
            graph_file, *data_files = files  # the graph, then the weights file it reads, under its own name
            _link_or_copy(*graph_file[:1], folder / "1" / graph_file[1])
            for artifact, file_name in data_files:
                # copied: the onnx package refuses external data with several hard links (a
                # "hardlink attack"), so a link would leave the bundle's own graph unreadable to it
                shutil.copy2(artifact, folder / "1" / file_name)
            (folder / "config.pbtxt").write_text(config_text(bundle, name, platform, instances, kind))
            (folder / "au_names.txt").write_text("\n".join(bundle.au_names) + "\n")
            written.append(repo / name)
    return written


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link shares the (hundreds of MB) weights with the bundle; a
    copy where the two are on different file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
