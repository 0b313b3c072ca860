"""Scoring every face: one ``FrameStream`` per face track.

Each track has its own frame-feature cache and its own windows, so one
face's motion never enters another face's frame differences.  A track's
stream starts at the frame its face was first found and gets every frame
from then on until the track is given up: the face's crop where it was
found, and "no face" where it was missing (the stream repeats the face's
last crop there, as a single-face run does across a face-less stretch; those
frames get no row of this face).  A track found in one frame only still gets
its row: the stream pads its window as the official evaluation does.

Rows come out in the order they become final; ``FrameTable.sort`` puts
them in (frame, face_id) order.  A frame in which no face was found gets one
row without a face id and ``success`` 0 (OpenFace's convention).
"""
from __future__ import annotations

from typing import Callable

from mdhr_runtime.crops.crop import IMAGENET, CroppedFrame, Cropper, Normaliser
from mdhr_runtime.faces.multitrack import TrackedFaces
from mdhr_runtime.faces.tracking import FaceResult
from mdhr_runtime.sources.frames import Frame
from mdhr_runtime.timing import StageClock
from mdhr_runtime.windows.streams import FrameStream, StreamRow

FaceRow = tuple[int | None, StreamRow]  # (face_id or None for "no face in this frame", row)


class TrackStreams:
    """Frames and their tracked faces in; final rows per face out."""

    def __init__(self, open_stream: Callable[[], FrameStream], cropper: Cropper | None = None,
                 normalise: Normaliser = IMAGENET):
        self.open_stream = open_stream
        self.cropper = cropper or Cropper()
        self.normalise = normalise
        self.streams: dict[int, FrameStream] = {}
        self.closed_calls = 0  # model calls of the streams already closed

    def push(self, frame: Frame, tracked: TrackedFaces, clock: StageClock) -> list[FaceRow]:
        """The rows made final by this frame, whose faces the tracker found."""
        rows: list[FaceRow] = []
        for face_id in tracked.expired:
            rows += self._close(face_id)
        faces = tracked.faces
        found = {f.face_id: f.face for f in faces}
        for face_id in tracked.ids:
            face = found.get(face_id)
            with clock.stage("preprocess"):
                crop = None if face is None else self.normalise(self.cropper.crop(frame.rgb, face))
            cropped = CroppedFrame(frame.index, frame.timestamp, face or FaceResult.missing(), crop)
            stream = self.streams.get(face_id)
            if stream is None:
                stream = self.streams[face_id] = self.open_stream()
            with clock.stage("model"):
                rows += _face_rows(face_id, stream.push(cropped))
        if not faces:
            rows.append((None, StreamRow(CroppedFrame(frame.index, frame.timestamp, FaceResult.missing(), None), None)))
        return rows

    def finish(self, clock: StageClock) -> list[FaceRow]:
        rows: list[FaceRow] = []
        with clock.stage("model"):
            for face_id in list(self.streams):
                rows += self._close(face_id)
        return rows

    def _close(self, face_id: int) -> list[FaceRow]:
        stream = self.streams.pop(face_id)
        rows = _face_rows(face_id, stream.finish())
        self.closed_calls += stream.model_calls
        return rows

    @property
    def model_calls(self) -> int:
        return self.closed_calls + sum(s.model_calls for s in self.streams.values())


def _face_rows(face_id: int, rows: list[StreamRow]) -> list[FaceRow]:
    """A face's rows: only the frames where it was found."""
    return [(face_id, row) for row in rows if row.frame.face.success]

