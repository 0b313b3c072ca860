"""Labelled face-crop sets in the official list format (CVI-SZU/MDHR ``data/``):
an image-path list (one path per line, relative to the image folder) and a
label list (one line per image, one 0/1 per AU, -1 = not labelled), line i
describing image i.

Clips are cut as the official test loaders (``video_*_val``) cut them: walk
the list in order and close a clip when it has T frames or when the next
image starts another video; a short clip is padded to T with its last image,
whose padded positions get -1 labels (ignored by F1).  Another video starts
when, for DISFA, the subject folder changes (``SN003/SN003_0.png``) and, for
BP4D, the task folder changes or frame numbers are not consecutive
(``F001/T1/2440.jpg``).  The official T is 16; here T is the bundle's, since
an exported model only takes its own clip length.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from mdhr.errors import InputError, MDHRError, param
from mdhr_runtime.crops.crop import resize_aligned, to_model_input
from mdhr_runtime.sources.frames import to_rgb

# Where the official loaders look for images, beside the lists.
OFFICIAL_IMAGE_FOLDERS = {"BP4D": "img", "DISFA": "img_o"}


@dataclass(frozen=True)
class LabelledClip:
    paths: tuple[str, ...]  # T image paths as listed (padding repeats the last)
    labels: np.ndarray  # [T, AUs]; padded positions are -1


def read_lists(image_list: Path, label_list: Path, num_aus: int) -> tuple[list[str], np.ndarray]:
    for path in (image_list, label_list):
        if not Path(path).is_file():
            raise InputError(f"{path}: no such list file; check {param('image_list')} and {param('label_list')}")
    paths = [line.strip() for line in Path(image_list).read_text().splitlines() if line.strip()]
    try:
        labels = np.loadtxt(label_list, ndmin=2)
    except ValueError as e:
        raise MDHRError(f"{label_list}: not a label list of numbers ({str(e).splitlines()[0][:120]})") from None
    if len(paths) != len(labels):
        raise MDHRError(f"{image_list} lists {len(paths)} images but {label_list} has {len(labels)} label "
                        "lines; line i of one must describe line i of the other")
    if labels.shape[1] != num_aus:
        raise MDHRError(f"{label_list}: {labels.shape[1]} labels per line, the model has {num_aus} AUs; "
                        "is this list for the bundle's dataset?")
    return paths, labels


def _frame_number(path: str) -> int:
    try:
        return int(Path(path).stem)
    except ValueError:
        raise MDHRError(f"BP4D image {path!r} is not named by its frame number (like F001/T1/2440.jpg), "
                        "which the official clip construction needs") from None


def starts_new_video(dataset: str, previous: str, current: str) -> bool:
    """Whether ``current`` begins another video than ``previous`` (the official rules)."""
    before, after = previous.split("/"), current.split("/")
    if dataset == "DISFA":
        return before[0] != after[0]
    task_changed = before[1:2] != after[1:2]
    return task_changed or _frame_number(previous) + 1 != _frame_number(current)


def build_clips(paths: list[str], labels: np.ndarray, dataset: str, length: int) -> list[LabelledClip]:
    clips, start = [], 0
    for i in range(len(paths)):
        full = i + 1 - start == length
        last = i + 1 == len(paths)
        if full or last or starts_new_video(dataset, paths[i], paths[i + 1]):
            clips.append(_padded(paths[start:i + 1], labels[start:i + 1], length))
            start = i + 1
    return clips


def _padded(paths: list[str], labels: np.ndarray, length: int) -> LabelledClip:
    missing = length - len(paths)
    padded_labels = np.concatenate([labels, -np.ones((missing, labels.shape[1]))])
    return LabelledClip(tuple(paths + [paths[-1]] * missing), padded_labels)


def load_face(path: Path) -> np.ndarray:
    """An aligned face crop as the official test transform makes it
    (Resize(224), ToTensor, Normalize): float32 [3, 224, 224]."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise InputError(f"cannot read image {path}: missing, damaged or not an image (check {param('image_root')})")
    return to_model_input(resize_aligned(to_rgb(image)))


class LabelledSet:
    """The clips of a labelled list, read lazily in model batches."""

    def __init__(self, image_list: Path, label_list: Path, image_root: Path | None, dataset: str,
                 au_count: int, clip_frames: int):
        if dataset not in OFFICIAL_IMAGE_FOLDERS:
            raise MDHRError(f"no official clip construction for dataset {dataset!r}")
        paths, labels = read_lists(image_list, label_list, au_count)
        self.image_root = Path(image_root) if image_root else default_image_root(Path(label_list), dataset)
        self.clips = build_clips(paths, labels, dataset, clip_frames)
        self.clip_frames = clip_frames

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
        """(clips [B, T, 3, 224, 224], number of real clips); the last batch
        is filled up with copies of its last clip."""
        for start in range(0, len(self.clips), batch_size):
            chunk = self.clips[start:start + batch_size]
            faces = [self._clip_faces(clip) for clip in chunk]
            faces += [faces[-1]] * (batch_size - len(faces))
            yield np.stack(faces), len(chunk)

    def labels(self) -> np.ndarray:
        """[clips, T, AUs] in clip order."""
        return np.stack([clip.labels for clip in self.clips])

    def _clip_faces(self, clip: LabelledClip) -> np.ndarray:
        # padding repeats the last image: read each file once
        loaded = {p: load_face(self.image_root / p) for p in dict.fromkeys(clip.paths)}
        return np.stack([loaded[p] for p in clip.paths])


def default_image_root(label_list: Path, dataset: str) -> Path:
    """The official layout keeps images in ``img`` (BP4D) or ``img_o``
    (DISFA) beside the lists; otherwise paths are relative to the lists."""
    official = label_list.parent / OFFICIAL_IMAGE_FOLDERS[dataset]
    return official if official.is_dir() else label_list.parent
