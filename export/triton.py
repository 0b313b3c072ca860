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

import hashlib
import os
import re
import stat
from pathlib import Path

from mdhr.errors import InputError, MDHRError, param
from mdhr_export.staging import staged_folder
from mdhr_runtime import integrity
from mdhr_runtime.bundle import Bundle, load_bundle
from mdhr_runtime.card import Artifact
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
    outputs += [_tensor(name, shape) for name, shape in list(bundle.card.output_shapes().items())[1:]]
    source = re.sub(r"[^\w.\- ]", "?", bundle.root.name)[:80]  # a comment line: no line breaks from a folder name
    lines = [
        f"# MDHR {bundle.dataset}/{bundle.backbone} from {source}: one request = {B} clip(s) of {T} "
        "frames,",
        "# normalised RGB face crops (pixel / 255, minus ImageNet mean, over std). au_scores are cosines;",
        f"# an AU is active at score >= {bundle.threshold}. Static shapes: no batching by Triton.",
        f'name: "{name}"',
        f'platform: "{platform}"',
        "max_batch_size: 0",
        "input [",
        _tensor(bundle.card.input.name, bundle.input_shape),
        "]",
        "output [",
        ",\n".join(outputs),
        "]",
        "instance_group [",
        f"  {{\n    count: {instances}\n    kind: {kind}\n  }}",
        "]",
    ]
    if bundle.untrained:
        lines.insert(0, "# WARNING: UNTRAINED model (made by mdhr-export --random-init): its outputs are meaningless.")
    text = "\n".join(lines) + "\n"
    if platform == "onnxruntime_onnx":
        text += TENSORRT_ACCELERATOR
    return text


def check_new_or_empty(repo: Path) -> Path:
    repo = Path(repo).absolute()
    check_output_folder(repo, param("repo"))
    if repo.exists() and any(repo.iterdir()):
        raise InputError(f"{param('repo')} {repo} exists and is not empty; give a new or empty folder")
    return repo


def write_repository(bundle_dir: str | Path, repo: str | Path, instances: int = 1, kind: str = "KIND_GPU") -> list[Path]:
    """Write ``repo`` (new or empty) whole or not at all; the model folders
    written.  Every file comes from the bundle, verified against its card,
    under a name the repository layout fixes or the card's checked one."""
    bundle = load_bundle(bundle_dir)
    repo = check_new_or_empty(repo)
    if instances < 1:
        raise InputError(f"{param('instances')} must be at least 1, got {instances}")
    models = [("onnxruntime_onnx", graph_files(bundle), "")]
    engine = bundle.artifact("engine")
    if engine is not None and engine.is_file():
        bundle.verified("engine")
        models.append(("tensorrt_plan", [(bundle.card.artifacts["engine"], "model.plan")], "_trt"))
    written = []
    with staged_folder(repo, check=check_new_or_empty, option=param("repo")) as staging:
        for platform, files, suffix in models:
            name = model_name(bundle) + suffix
            folder = staging / name
            (folder / "1").mkdir(parents=True)
            for artifact, file_name in files:
                _copy_verified(bundle.root / artifact.name, folder / "1" / file_name, artifact)
            (folder / "config.pbtxt").write_text(config_text(bundle, name, platform, instances, kind))
            (folder / "au_names.txt").write_text("\n".join(bundle.au_names) + "\n")
            written.append(repo / name)
    return written


def graph_files(bundle: Bundle) -> list[tuple[Artifact, str]]:
    """The graph (as ``model.onnx``) and each weights file it reads (under
    the name it reads it by), all verified artifacts of the bundle."""
    kind = "onnx" if bundle.artifact("onnx") is not None else "onnx_fp16"  # a --target gpu bundle has only fp16
    graph = bundle.verified(kind)
    by_name = {artifact.name: artifact for artifact in bundle.card.artifacts.values()}
    files = [(bundle.card.artifacts[kind], "model.onnx")]
    for location in sorted(integrity.external_data_locations(graph)):
        if location == "model.onnx":  # checked by verified(); here it would replace the graph
            raise MDHRError(f"{graph}: reads its weights from a file named model.onnx; export the bundle again")
        files.append((by_name[location], location))
    return files


def _copy_verified(source: Path, target: Path, artifact: Artifact) -> None:
    """Copy ``source`` (a regular file, never followed through a link) and
    check that the bytes copied are the artifact's: the repository holds
    exactly what was verified, even if the bundle changed meanwhile.
    Copied, not linked: the onnx package refuses external data with several
    hard links (a "hardlink attack"), and a link would share later edits."""
    digest, size = hashlib.sha256(), 0
    handle = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(handle, "rb") as reader, open(target, "xb") as writer:
        if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
            raise MDHRError(f"{source}: not a regular file; export the bundle again")
        while block := reader.read(1 << 20):
            digest.update(block)
            size += len(block)
            writer.write(block)
    if size != artifact.size or digest.hexdigest() != artifact.sha256:
        raise MDHRError(f"{source}: changed while it was copied (not what the card says); export the bundle again")
