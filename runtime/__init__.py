"""MDHR's torch-free video runtime.

The front half, one small piece per job (see each module):

    frames.FrameSource   video / image folder / image -> Frame (RGB, index, seconds)
    faces.FaceTracker    Frame -> FaceResult (one smoothed face box per frame, or none)
    crop.crop_stream     frames + tracker -> CroppedFrame (normalised [3, 224, 224] crop)
    clips.ClipWindows    CroppedFrame stream -> ClipBatch ([B, T, 3, 224, 224] + masks)
    table.FrameTable     per-frame results -> CSV / JSON / timeline PNG (atomic writes)

Submodules are imported on use, so ``import mdhr_runtime`` stays cheap and
never pulls in torch.
"""
