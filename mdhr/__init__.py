"""MDHR facial action unit recognition in PyTorch, compatible with the
official checkpoints.

``mdhr.aus`` and ``mdhr.errors`` import no torch; the model entry points
below load torch on first use, so torch-free code can share them.
"""
from mdhr.aus import AU_SETS, BACKBONES, AUSet, au_set
from mdhr.errors import BackendUnavailable, BundleError, InputError, MDHRError

__all__ = ["AU_SETS", "BACKBONES", "AUSet", "BackendUnavailable", "BundleError", "InputError", "MDHR", "MDHRError", "au_set", "build_model",
           "load_model", "read_state_dict"]
__version__ = "0.1.0"

_MODEL_API = {"MDHR": "mdhr.model", "build_model": "mdhr.loading", "load_model": "mdhr.loading",
              "read_state_dict": "mdhr.loading"}


def __getattr__(name: str):
    if name in _MODEL_API:
        import importlib

        return getattr(importlib.import_module(_MODEL_API[name]), name)
    raise AttributeError(f"module 'mdhr' has no attribute {name!r}")
