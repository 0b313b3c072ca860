"""Face detection: every face in a frame, with a box, a confidence and landmarks.

Two detectors share one small protocol (``detect(rgb) -> list[Detection]``):

* ``MTCNNDetector`` (the default): the three MTCNN networks (P-, R- and O-Net)
  shipped in ``data/`` and run with ONNX Runtime by the code below.  It gives a
  calibrated confidence and five landmarks (which level the eyes), and its
  O-Net alone can re-check last frame's box in about a millisecond, which is
  what makes per-frame tracking cheap.
* ``HaarDetector``: OpenCV's frontal-face cascade.  No extra files, but no
  landmarks, a poor confidence and a jumpier box; kept as an option.

``tracking.FaceTracker`` turns per-frame detections into one smoothed box
per frame (``multitrack.py``: every face).  Measurements behind the choice
are in ``measure_faces.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import cv2
import numpy as np

from mdhr.errors import MDHRError
from mdhr_runtime.backends.sessions import onnx_session

DATA_DIR = Path(__file__).parent.parent / "data"  # runtime/data: the vendored MTCNN weights

# Landmark order of ``Detection.landmarks`` (MTCNN's five points; "left" is the
# subject's right side as it appears on the left of the image).
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class Detection:
    """One face found in one frame, in original pixel coordinates."""

    box: tuple[float, float, float, float]  # x, y, w, h
    confidence: float  # 0..1
    landmarks: np.ndarray | None = None  # [5, 2] (x, y) in LANDMARK_NAMES order

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


class FaceDetector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """All faces in an RGB uint8 frame, best first."""


# --------------------------------------------------------------------------
# Box helpers.  Inside MTCNN boxes are float rows [x1, y1, x2, y2, score].


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax2, ay2 = a[0] + a[2], a[1] + a[3]
    bx2, by2 = b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _nms(boxes: np.ndarray, threshold: float, by_min_area: bool = False) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression.  With
    ``by_min_area`` overlap is measured against the smaller box, which removes
    a small box nested in a big one (MTCNN's last stage does this)."""
    order = np.argsort(-boxes[:, 4]) if len(boxes) else np.zeros(0, dtype=np.int64)
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        order = rest[_overlap(boxes[best], boxes[rest], by_min_area) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _apply_regression(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move box edges by the network's offsets (in units of box width/height)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    out[:, 0] += offsets[:, 0] * w
    out[:, 1] += offsets[:, 1] * h
    out[:, 2] += offsets[:, 2] * w
    out[:, 3] += offsets[:, 3] * h
    return out


def _to_square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square about its centre (the next network's input
    is square, so a non-square crop would squash the face)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + (w - side) / 2
    out[:, 1] = boxes[:, 1] + (h - side) / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _crop_patches(rgb: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """[N, size, size, 3] float32 patches of ``boxes``; parts outside the
    frame are black, as the networks were trained."""
    height, width = rgb.shape[:2]
    patches = np.zeros((len(boxes), size, size, 3), dtype=np.float32)
    for k, (x1, y1, x2, y2) in enumerate(np.round(boxes[:, :4]).astype(np.int64)):
        if x2 <= x1 or y2 <= y1:
            continue
        if x1 >= 0 and y1 >= 0 and x2 <= width and y2 <= height:
            region = rgb[y1:y2, x1:x2]
        else:
            region = np.zeros((y2 - y1, x2 - x1, 3), dtype=np.uint8)
            sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
            if sx2 > sx1 and sy2 > sy1:
                region[sy1 - y1:sy2 - y1, sx1 - x1:sx2 - x1] = rgb[sy1:sy2, sx1:sx2]
        patches[k] = cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA)
    return patches


def _network_input(images: np.ndarray) -> np.ndarray:
    """MTCNN's input convention: pixels to [-1, 1], and width before height
    (the Caffe originals were trained on column-major MATLAB images, so the
    converted networks take each image transposed)."""
    return np.ascontiguousarray(((images - 127.5) * 0.0078125).transpose(0, 2, 1, 3), dtype=np.float32)


def _session(path: Path, threads: int):
    if not path.is_file():
        raise MDHRError(f"face detector weights missing at {path}: reinstall mdhr-toolkit")
    return onnx_session(path, threads, ["CPUExecutionProvider"], remedy="reinstall mdhr-toolkit")


# (scale, dx, dy) of the boxes O-Net checks around last frame's face, in
# units of the face size.  Measured (measure_faces.py): one box alone drifts
# (its output is its next input, a random walk: 3x the jitter); three scales
# about the same centre cost 1.4 ms more and follow fast motion as well as
# six shifted boxes did.
REFINE_CANDIDATES = ((0.9, 0.0, 0.0), (1.0, 0.0, 0.0), (1.15, 0.0, 0.0))


class MTCNNDetector:
    """MTCNN (Zhang et al. 2016) with the converted networks in ``data/``.

    A full search shrinks the frame to at most ``max_side`` pixels on its
    long side and looks for faces of at least ``min_face`` pixels there: by
    default faces from 1/16 of the frame's long side (40 pixels at 640x360)
    up.  Measured at 640x360: the same detections as searching the full
    frame for 40-pixel faces, in 20 instead of 26 ms.  ``refine`` (tracking)
    always works on the full-resolution frame.
    """

    name = "mtcnn"

    def __init__(self, min_face: int = 20, max_side: int = 320,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 scale_step: float = 0.709, threads: int = 1):
        self.min_face = min_face
        self.max_side = max_side
        self.thresholds = thresholds
        self.scale_step = scale_step
        self.refine_candidates = REFINE_CANDIDATES
        self._pnet = _session(DATA_DIR / "pnet.onnx", threads)
        self._rnet = _session(DATA_DIR / "rnet.onnx", threads)
        self._onet = _session(DATA_DIR / "onet.onnx", threads)

    # -- public ------------------------------------------------------------

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        small, factor = _shrink(rgb, self.max_side)
        boxes = self._propose(small)
        boxes = self._filter(small, boxes)
        if len(boxes):
            boxes[:, :4] /= factor
        return self._output(rgb, boxes)

    def refine(self, rgb: np.ndarray, box: Sequence[float]) -> Detection | None:
        """Re-check a face expected near ``box`` (x, y, w, h) with the output
        network alone.  This is the tracking step: about 1 ms instead of a
        full pyramid search, and it returns fresh landmarks."""
        x, y, w, h = box
        side = max(w, h)
        cx, cy = x + w / 2, y + h / 2
        # Nudged copies let the box follow a face that moved or grew between
        # frames; O-Net's own regression then snaps each into place, and the
        # agreeing answers are averaged (less jitter than any one of them).
        candidates = [[cx + dx * side - scale * side / 2, cy + dy * side - scale * side / 2,
                       cx + dx * side + scale * side / 2, cy + dy * side + scale * side / 2, 1.0]
                      for scale, dx, dy in self.refine_candidates]
        found = self._output(rgb, np.asarray(candidates, dtype=np.float64))
        return found[0] if found else None

    # -- stages ------------------------------------------------------------

    def _pyramid(self, height: int, width: int) -> list[float]:
        """Scales at which P-Net's 12-pixel window covers faces from
        ``min_face`` up to the whole frame."""
        scale = 12.0 / self.min_face
        side = min(height, width) * scale
        scales = []
        while side >= 12:
            scales.append(scale)
            scale *= self.scale_step
            side *= self.scale_step
        return scales

    def _propose(self, rgb: np.ndarray) -> np.ndarray:
        """P-Net over the image pyramid: square candidate boxes."""
        height, width = rgb.shape[:2]
        found = []
        for scale in self._pyramid(height, width):
            size = (int(math.ceil(width * scale)), int(math.ceil(height * scale)))
            scaled = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            offsets, probs = self._pnet.run(None, {"input_1": _network_input(scaled[None].astype(np.float32))})
            # Outputs are [1, W', H', C]: the first grid axis is x.
            gx, gy = np.nonzero(probs[0, :, :, 1] >= self.thresholds[0])
            if gx.size == 0:
                continue
            # Each grid cell is a 12x12 window with stride 2 in the scaled image.
            x1, y1 = 2.0 * gx / scale, 2.0 * gy / scale
            cell = 12.0 / scale
            boxes = np.stack([x1, y1, x1 + cell, y1 + cell, probs[0, gx, gy, 1]], axis=1)
            boxes = np.concatenate([boxes, offsets[0, gx, gy, :]], axis=1)
            found.append(boxes[_nms(boxes, 0.5)])
        if not found:
            return np.zeros((0, 5))
        boxes = np.concatenate(found)
        boxes = boxes[_nms(boxes, 0.7)]
        return _to_square(_apply_regression(boxes[:, :5], boxes[:, 5:9]))

    def _filter(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """R-Net rejects most P-Net candidates and tightens the rest."""
        if len(boxes) == 0:
            return boxes
        offsets, probs = self._rnet.run(None, {"input_2": _network_input(_crop_patches(rgb, boxes, 24))})
        keep = probs[:, 1] > self.thresholds[1]
        boxes = boxes[keep].copy()
        boxes[:, 4] = probs[keep, 1]
        offsets = offsets[keep]
        picked = _nms(boxes, 0.7)
        return _to_square(_apply_regression(boxes[picked], offsets[picked]))

    def _output(self, rgb: np.ndarray, boxes: np.ndarray) -> list[Detection]:
        """O-Net: final score, box and five landmarks."""
        if len(boxes) == 0:
            return []
        offsets, points, probs = self._onet.run(None, {"input_3": _network_input(_crop_patches(rgb, boxes, 48))})
        keep = probs[:, 1] > self.thresholds[2]
        if not keep.any():
            return []
        boxes = boxes[keep].copy()
        points = points[keep]
        w = (boxes[:, 2] - boxes[:, 0])[:, None]
        h = (boxes[:, 3] - boxes[:, 1])[:, None]
        xs = boxes[:, 0:1] + w * points[:, 0:5]
        ys = boxes[:, 1:2] + h * points[:, 5:10]
        boxes = _apply_regression(boxes, offsets[keep])
        boxes[:, 4] = probs[keep, 1]
        landmarks = np.stack([xs, ys], axis=2)  # [N, 5, 2]
        return [_merge_cluster(boxes, landmarks, members)
                for members in _clusters(boxes, 0.7, by_min_area=True)]


def _clusters(boxes: np.ndarray, threshold: float, by_min_area: bool) -> list[np.ndarray]:
    """Groups of boxes that NMS would fold into each kept box, best first."""
    kept = _nms(boxes, threshold, by_min_area)
    unassigned = np.ones(len(boxes), dtype=bool)
    groups = []
    for k in kept:
        overlap = _overlap(boxes[k], boxes, by_min_area)
        members = np.nonzero(unassigned & (overlap > threshold))[0]
        members = np.union1d(members, [k]).astype(np.int64)
        unassigned[members] = False
        groups.append(members)
    return groups


def _overlap(box: np.ndarray, boxes: np.ndarray, by_min_area: bool) -> np.ndarray:
    iw = np.maximum(0.0, np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]))
    ih = np.maximum(0.0, np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]))
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    if by_min_area:
        return inter / np.maximum(np.minimum(area, areas), 1e-9)
    return inter / np.maximum(area + areas - inter, 1e-9)


def _merge_cluster(boxes: np.ndarray, landmarks: np.ndarray, members: np.ndarray) -> Detection:
    """One detection from the O-Net outputs that agree on a face: their
    score-weighted mean.  Plain NMS keeps whichever near-duplicate scored a
    hair higher, and that choice flips between frames (box jitter); the mean
    does not."""
    weights = boxes[members, 4] / boxes[members, 4].sum()
    x1, y1, x2, y2 = (weights[:, None] * boxes[members, :4]).sum(axis=0)
    points = (weights[:, None, None] * landmarks[members]).sum(axis=0)
    return Detection(box=(float(x1), float(y1), float(x2 - x1), float(y2 - y1)),
                     confidence=float(boxes[members, 4].max()),
                     landmarks=points.astype(np.float32))


def _shrink(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The frame scaled so its long side is at most ``max_side``, and the
    factor used: detection cost grows with pixels, face size needs few."""
    long_side = max(rgb.shape[:2])
    if max_side <= 0 or long_side <= max_side:
        return rgb, 1.0
    factor = max_side / long_side
    size = (max(1, round(rgb.shape[1] * factor)), max(1, round(rgb.shape[0] * factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), factor


# The cascade's stage-sum margin (after its own 5-neighbour vote) on true
# faces in measure_faces' footage: 5th percentile 6.1 (face.jpg) and 3.5
# (grace_hopper.jpg); false hits 1.6 to 5.6, so no cut separates them.
# Mapping 0 to confidence 0.5 puts the tracker's 0.9 cut at a margin of 2.2,
# which keeps 95% of true faces (a higher cut lost half of one footage).
HAAR_MARGIN_MIDPOINT = 0.0


class HaarDetector:
    """OpenCV's Viola-Jones frontal-face cascade (ships with OpenCV).

    The cascade has no probability; ``confidence`` squashes its stage-sum
    margin through a logistic.  It finds no landmarks, so crops are not
    levelled."""

    name = "haar"

    def __init__(self, min_face: int = 20, max_side: int = 320,
                 cascade: str = "haarcascade_frontalface_default.xml",
                 scale_step: float = 1.1, min_neighbors: int = 5):
        path = Path(cv2.data.haarcascades) / cascade
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise MDHRError(f"OpenCV face cascade {path} could not be loaded: reinstall opencv-python-headless")
        self.min_face = min_face
        self.max_side = max_side
        self.scale_step = scale_step
        self.min_neighbors = min_neighbors

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        small, factor = _shrink(rgb, self.max_side)
        return self._search(_gray(small), factor, (0.0, 0.0), self.min_face, None)

    def refine(self, rgb: np.ndarray, box: Sequence[float]) -> Detection | None:
        """Search only near ``box`` and only at nearby sizes: the cascade on a
        small window, so tracking costs a fraction of a full search."""
        x, y, w, h = box
        side = max(w, h)
        x1, y1 = max(0, int(x - side * 0.5)), max(0, int(y - side * 0.5))
        x2, y2 = min(rgb.shape[1], int(x + w + side * 0.5)), min(rgb.shape[0], int(y + h + side * 0.5))
        if x2 - x1 < 24 or y2 - y1 < 24:
            return None
        # Shrink the window so the face is about 80 pixels: plenty for a cascade.
        factor = min(1.0, 80.0 / side)
        window = cv2.resize(rgb[y1:y2, x1:x2], None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        expected = side * factor
        found = self._search(_gray(window), factor, (x1, y1), int(expected * 0.75), int(expected * 1.35) + 1)
        return found[0] if found else None

    def _search(self, gray: np.ndarray, factor: float, origin: tuple[float, float],
                min_size: int, max_size: int | None) -> list[Detection]:
        boxes, _, weights = self._cascade.detectMultiScale3(
            gray, scaleFactor=self.scale_step, minNeighbors=self.min_neighbors,
            minSize=(min_size, min_size), maxSize=(max_size, max_size) if max_size else (0, 0),
            outputRejectLevels=True)
        found = [
            Detection(box=(float(origin[0] + b[0] / factor), float(origin[1] + b[1] / factor),
                           float(b[2] / factor), float(b[3] / factor)),
                      confidence=1.0 / (1.0 + math.exp(HAAR_MARGIN_MIDPOINT - float(wt))))
            for b, wt in zip(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(weights).reshape(-1))
        ]
        return sorted(found, key=lambda d: -d.area)


def _gray(rgb: np.ndarray) -> np.ndarray:
    """Equalised grey: the cascade works on contrast, which this restores in
    dark footage."""
    return cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
