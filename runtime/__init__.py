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
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.detector import AUDetector
from mdhr_runtime.faces.quality import QualityOptions
from mdhr_runtime.results.table import FrameTable

__all__ = ["AUDetector", "FrameTable", "QualityOptions", "load_bundle"]
