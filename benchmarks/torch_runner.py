"""PyTorch eager as a runner (the runtime's ``Runner`` protocol), so the
benchmark and parity tools treat it like the exported backends.

This is what a user of the official code runs: the model in eager mode,
float32, optionally under autocast.  Imported only when a torch backend is
asked for, so ONNX-only installs never load torch.
"""
from __future__ import annotations

import numpy as np
import torch

import mdhr
from mdhr.errors import MDHRError
from mdhr_export.graph import ClipOutputs, output_names
from mdhr_runtime.bundle import Bundle

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_device() -> torch.device:
    # The official test script moves the model to CUDA whenever it can.
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TorchRunner:
    def __init__(self, model: mdhr.MDHR, precision: str = "fp32", device: torch.device | None = None):
        self.device = device or default_device()
        self.precision = precision
        if self.device.type == "cuda" and precision == "fp32":
            # PyTorch runs CUDA convolutions in TF32 by default: ResNet's
            # "fp32" then differs from float32 by ~1e-4 (measured on an
            # H100), too far to be the reference.  The switches are
            # process-wide; the tools run one backend per process.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.autocast_dtype = AUTOCAST_DTYPES[precision]
        self.module = ClipOutputs(model).eval().to(self.device)
        self.output_names = output_names(model)
        self.name = "torch" if precision == "fp32" else f"torch-{precision}"

    @classmethod
    def from_checkpoint(cls, ckpt, bundle: Bundle, precision: str = "fp32") -> "TorchRunner":
        """The checkpoint's model, checked to be the bundle's dataset and backbone."""
        model = mdhr.load_model(ckpt, bundle.dataset, bundle.backbone)
        runner = cls(model, precision)
        if runner.output_names != list(bundle.card.outputs):
            raise MDHRError(f"{ckpt}: model outputs {runner.output_names} differ from the bundle's "
                            f"{list(bundle.card.outputs)}; use the checkpoint the bundle was exported from")
        return runner

    def infer(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(clips, dtype=np.float32)).to(self.device)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.autocast_dtype,
                                                    enabled=self.autocast_dtype is not None):
            outputs = self.module(x)
        # Copying to host waits for the GPU, but say so explicitly: timings
        # must cover the whole computation, not just its launch.
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return {n: o.float().cpu().numpy() for n, o in zip(self.output_names, outputs)}

    def close(self) -> None:
        self.module = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
