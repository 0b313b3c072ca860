"""The export's memory-hungry graph steps, each in a fresh Python process.

Tracing a model to ONNX with torch's dynamo exporter and simplifying the
graph leave a gigabyte or more behind in the process (caches of the tracer,
heap the allocator does not return), and the steps add up: one process
doing them all reached 4.5 GiB for ResNet-50 with stage graphs.  Run apart,
each step's leftovers die with its process, so an export's largest process
is its largest single step.  The steps pass files, not objects: the model's
weights (a state dict the child loads with ``weights_only=True``) and ONNX
graphs.
"""
from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

import mdhr
from mdhr_export import fp16 as fp16_tools
from mdhr_export import graph
from mdhr_export.weights import WeightsFile, save_sharing


@dataclass(frozen=True)
class ModelRecipe:
    """How a child process gets the parent's model: its configuration and
    its weights saved beside the bundle being staged."""

    dataset: str
    backbone: str
    weights: Path

    @classmethod
    def save(cls, model: mdhr.MDHR, weights: Path) -> "ModelRecipe":
        torch.save(model.state_dict(), weights)
        return cls(model.dataset, model.backbone, weights)

    def build(self) -> mdhr.MDHR:
        model = mdhr.build_model(self.dataset, self.backbone)
        model.load_state_dict(torch.load(self.weights, map_location="cpu", weights_only=True))
        release_freed_memory()  # the loaded copy of the weights, now in the model
        return model.eval()


def release_freed_memory() -> None:
    """Hand memory freed by a step back to the system.  glibc keeps freed
    heap for reuse, so without a trim a process holding a 360 MB graph
    would reach its next peak (serialising the graph, say) from the last
    peak's height rather than from what is still alive."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def run_isolated(step, *args):
    """``step(*args)`` in a fresh process; its result (or its exception)
    comes back.  Interrupting the parent ends the child too."""
    pool = multiprocessing.get_context("spawn").Pool(1)
    try:
        result = pool.apply(step, args)
    except BaseException:
        pool.terminate()
        pool.join()
        raise
    pool.close()  # the child ends on its own, releasing what it registered (killed, it would leak)
    pool.join()
    return result


# -- the steps (module level, so a spawned process can find them) -------------

def export_model(recipe: ModelRecipe, batch: int, frames: int, opset: int, chatty: bool, raw: Path
                 ) -> tuple[list[str], dict[str, list[str]]]:
    """The whole model's checked ONNX to ``raw``; returns the names of its
    precision-sensitive nodes and its reduced-precision islands (both read
    from the exporter's scopes, which simplification drops)."""
    proto = graph.check(graph.export_onnx(recipe.build(), batch, frames, opset, chatty=chatty))
    islands = graph.reduced_precision_islands(proto)
    return save(proto, raw), islands


def simplify(raw: Path, slim: Path, metadata: dict | None, weights: WeightsFile) -> WeightsFile:
    """``raw`` simplified and checked, with the card as metadata, to ``slim``,
    its weights shared through ``weights`` (returned with what it holds)."""
    proto = graph.simplify(onnx.load(str(raw)))
    release_freed_memory()  # the input graph and the simplifier's working copies
    proto = graph.check(proto)
    if metadata is not None:
        graph.set_metadata(proto, metadata)
    release_freed_memory()
    return save_sharing(proto, slim, weights)


def to_fp16(source: Path, keep_fp32: list[str], target: Path, weights: WeightsFile | None) -> WeightsFile | None:
    """The FP16 version of the graph in ``source`` (``keep_fp32`` nodes
    stay float32) to ``target``: its weights shared through ``weights``
    (returned with what it holds), or, without, inside the graph."""
    proto = fp16_tools.to_fp16(onnx.load(str(source)), keep_fp32)
    release_freed_memory()
    if weights is None:
        onnx.save_model(proto, str(target))
        return None
    return save_sharing(proto, target, weights)


def save(proto: onnx.ModelProto, path: Path) -> list[str]:
    """Write ``proto`` (serialising copies it: trim first) and return its
    precision-sensitive nodes, read from the exporter's scopes, which
    simplification drops."""
    sensitive = graph.precision_sensitive_nodes(proto)
    release_freed_memory()
    onnx.save_model(proto, str(path))
    return sensitive
