"""Multi-face tracking and its cost, measured:

    python -m scripts.faces_multiface BUNDLE [--photo tests/data/face.jpg] [--frames 60] [--out DIR]

* how alike the appearance cue finds each test "person" to itself and to
  the others;
* identity switches of each tracking cue (overlap, motion, appearance) on
  two faces crossing twice at four speeds, and on a face that leaves and
  comes back while a newcomer enters (``crowd.py``'s footage);
* whole-pipeline frames/s of ``--faces all`` with 1, 2 and 4 faces side by
  side on the same 640x360 footage (centred windows), with the time per
  frame of each stage;
* face-less 960x540 video and a 640x360 talking face, ``--faces largest``.

Prints one JSON document.  Numbers depend on the machine's load: quote
``uptime`` with them.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2

from mdhr_runtime.faces.detection import MTCNNDetector, box_iou
from mdhr_runtime.faces.multitrack import CUES, MultiFaceTracker
from tests.support.crowd import CrowdMaker, crossing, leave_and_return, side_by_side
from tests.support.synthetic import FootageMaker, Segment, write_video


def identity_switches(tracker: MultiFaceTracker, frames) -> dict:
    """Switches: a person's id changing between the frames they were found
    (people matched to faces one to one by box overlap > 0.3)."""
    history = []
    for index, frame in enumerate(frames):
        faces = tracker.update(frame.rgb, index / 30)
        pairs = sorted(((box_iou(f.face.box, box), p, f.face_id) for p, box in enumerate(frame.truths) if box
                        for f in faces), reverse=True)
        got, used = {}, set()
        for overlap, person, face_id in pairs:
            if overlap > 0.3 and person not in got and face_id not in used:
                got[person], used = face_id, used | {face_id}
        history.append(got)
    switches = 0
    for person in range(len(frames[0].truths)):
        seen = [row[person] for row in history if person in row]
        switches += sum(a != b for a, b in zip(seen, seen[1:]))
    return {"switches": switches, "ids": tracker._next_id, "searches": tracker.searches}


def likeness(photo) -> dict:
    """Appearance similarity of each person to itself and to the others,
    each seen alone at three places, sizes and rolls."""
    from itertools import combinations

    from mdhr_runtime.faces.appearance import similarity
    from mdhr_runtime.faces.multitrack import _look
    from tests.support.synthetic import Placement

    detector, maker, looks = MTCNNDetector(), CrowdMaker(photo, 4), {}
    for k, (cx, height, roll) in enumerate(((230, 150, 0), (320, 100, 8), (400, 180, -6))):
        for person in range(4):
            places = [None] * 4
            places[person] = Placement(cx=cx, cy=180, face_height=height, roll=roll)
            frame = maker.render(places, 3.0 * k)
            looks[person, k] = _look(frame.rgb, detector.detect(frame.rgb)[0])
    same = [similarity(looks[a], looks[b]) for a, b in combinations(looks, 2) if a[0] == b[0]]
    other = [similarity(looks[a], looks[b]) for a, b in combinations(looks, 2) if a[0] != b[0]]
    return {"same_person": [round(min(same), 3), round(max(same), 3)],
            "other_people": [round(min(other), 3), round(max(other), 3)]}


def tracking(photo) -> dict:
    detector = MTCNNDetector()
    results = {}
    for frames in (60, 90, 120, 150):
        footage = list(CrowdMaker(photo, 2).frames(crossing(frames), frames))
        results[f"crossing_{frames}_frames"] = {cue: identity_switches(MultiFaceTracker(detector, cue=cue), footage)
                                                for cue in CUES}
    footage = list(CrowdMaker(photo, 3).frames(leave_and_return(), 200))
    results["leave_and_return"] = {cue: identity_switches(MultiFaceTracker(detector, cue=cue), footage)
                                   for cue in CUES}
    return results


def costs(bundle: Path, photo, frames: int, folder: Path) -> dict:
    from mdhr_runtime.detector import AUDetector

    videos = {}
    for count in (1, 2, 4):
        made = CrowdMaker(photo, count).frames(side_by_side(count, face_height=120), frames)
        videos[f"faces_{count}"] = ("all", folder / f"faces_{count}.mp4", [f.rgb for f in made])
    empty = FootageMaker(photo, size=(960, 540)).frames([Segment("empty", 300)])
    videos["faceless_960x540"] = ("largest", folder / "faceless.mp4", [f.rgb for f in empty])
    talking = FootageMaker(photo).frames([Segment("clean", frames)])
    videos["talking_640x360"] = ("largest", folder / "talking.mp4", [f.rgb for f in talking])
    results = {}
    with AUDetector(bundle, backend="onnxruntime") as detector:
        for name, (faces, path, rgb) in videos.items():
            write_video(path, rgb)
            report = detector.profile_video(path, faces=faces)
            results[name] = {key: report[key] for key in ("frames", "face_rows", "fps", "seconds", "model_calls")}
            results[name]["ms_per_frame"] = {k: v["ms_per_frame"] for k, v in report["stages"].items()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--photo", type=Path, default=Path("tests/data/face.jpg"))
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--skip-tracking", action="store_true")
    args = parser.parse_args()
    photo = cv2.cvtColor(cv2.imread(str(args.photo)), cv2.COLOR_BGR2RGB)
    report = {} if args.skip_tracking else {"likeness": likeness(photo), "tracking": tracking(photo)}
    with tempfile.TemporaryDirectory() as folder:
        report["costs"] = costs(args.bundle, photo, args.frames, Path(folder))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
