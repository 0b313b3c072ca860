"""MDHR's torch-free runtime: facial action units per frame from video.

    from mdhr_runtime import AUDetector
    with AUDetector("bundles/bp4d") as detector:
        table = detector.predict_video("interview.mp4")
    table.write_csv("interview.csv")

The folders follow the flow (docs/pipeline.md has the tree):

    sources/   video / image folder / image / camera -> Frame
    faces/     detection, tracking (one face or every face), the detector registry,
               landmarks, head pose and quality flags per face
    crops/     tracked face -> normalised [3, 224, 224] crop (the card's mean/std)
    windows/   crops -> official or centred windows, streamed, per face track
    backends/  the graphs: runners, stage graphs, one ONNX Runtime session factory, selection
    results/   FrameTable -> CSV / JSON / timeline PNG
    batch/     corpora and segments on Ray
    cli/       the commands, their option checks and the live loop
    files/     atomic, checked output files
    pipeline.py  the one scoring loop every entry point uses
    detector.py  AUDetector: composes bundle, backend choice, graphs and pipeline

No part imports torch; graphs open when a run first needs them.
"""
__all__ = ["AUDetector", "FrameTable", "QualityOptions", "load_bundle"]

# Imported on first use (PEP 562): the commands' entry points
# (mdhr_runtime.cli.launch) set up their signal handling before the
# seconds that numpy, OpenCV and ONNX Runtime take to import.
_PUBLIC = {"AUDetector": "mdhr_runtime.detector", "FrameTable": "mdhr_runtime.results.table",
           "QualityOptions": "mdhr_runtime.faces.quality", "load_bundle": "mdhr_runtime.bundle"}


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'mdhr_runtime' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
