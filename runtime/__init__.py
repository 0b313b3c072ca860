"""MDHR's torch-free runtime: facial action units per frame from video.

    from mdhr_runtime import AUDetector
    with AUDetector("bundles/bp4d") as detector:
        table = detector.predict_video("interview.mp4")
    table.write_csv("interview.csv")

The pieces, one job each (see each module):

    bundle.load_bundle    bundle folder -> Bundle (model card + artifacts)
    runners.open_runner   Bundle -> Runner (ONNX Runtime, TensorRT or OpenVINO), and why
    frames.FrameSource    video / image folder / image -> Frame (RGB, index, seconds)
    faces.MTCNNDetector   RGB frame -> Detection (every face: box, confidence, landmarks)
    tracking.FaceTracker  Frame -> FaceResult (one smoothed face box per frame, or none)
    multitrack.MultiFaceTracker  Frame -> TrackedFace per face (face_id + FaceResult)
    crop.crop_stream      frames + tracker -> CroppedFrame (normalised [3, 224, 224] crop)
    clips.ClipWindows     CroppedFrame stream -> ClipBatch ([B, T, 3, 224, 224] + masks), official windows
    stages.StageRunner    the bundle's frame stage (once per frame) and clip stage (once per window)
    windows.FrameStream   CroppedFrame -> rows when final: official or centred windows, streaming
    multiface.TrackStreams  one FrameStream per face track (--faces all)
    live.run_live         a camera or stream URL, scored live
    table.FrameTable      per-frame results -> CSV / JSON / timeline PNG (atomic writes)
    detector.AUDetector   all of the above in one call

Submodules are imported on use, so ``import mdhr_runtime`` stays cheap and
never pulls in torch.
"""
__all__ = ["AUDetector", "FrameTable", "load_bundle"]


def __getattr__(name: str):
    if name == "AUDetector":
        from mdhr_runtime.detector import AUDetector

        return AUDetector
    if name == "FrameTable":
        from mdhr_runtime.results.table import FrameTable

        return FrameTable
    if name == "load_bundle":
        from mdhr_runtime.bundle import load_bundle

        return load_bundle
    raise AttributeError(f"module 'mdhr_runtime' has no attribute {name!r}")
