"""One scoring pipeline for every entry point: the same answer from
predict_video (mdhr-run), a live source, and segments (mdhr-batch), in both
window modes and both face modes, on real encoded videos; no model run for
windows without a face; choice lists defined once (the import rules are
tests/test_layout.py's); the card as the truth; and a light start (one image without the whole-model graph)."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mdhr.errors import MDHRError
from mdhr_runtime import choices
from mdhr_runtime.batch.segments import SegmentPlan, predict_segment, stitch
from mdhr_runtime.bundle import load_bundle
from mdhr_runtime.runs.camera import run_live
from mdhr_runtime.windows.streams import WindowPlan
from tests.support import DATA, ROOT
from tests.support.crowd import side_by_side
from tests.support.footage import crowd_video, face_video
from tests.support.synthetic import Segment

RUNTIME = ROOT / "runtime"
SOURCES = [RUNTIME, RUNTIME.parent / "benchmarks", RUNTIME.parent / "export"]
WINDOWS = ["official", "centred"]


@pytest.fixture(scope="module")
def gap_video(tmp_path_factory, photo):
    """24 frames: a face, 6 frames without one (a whole 4-frame window among
    them), the face again (mp4)."""
    return face_video(tmp_path_factory.mktemp("gap") / "gap.mp4", photo,
                      (Segment("clean", 12), Segment("empty", 6), Segment("clean", 6)))


@pytest.fixture(scope="module")
def pair_video(tmp_path_factory, photo):
    video, _ = crowd_video(tmp_path_factory.mktemp("pair") / "pair.mp4", photo, 2, side_by_side(2, size=(320, 180)),
                           8, size=(320, 180))
    return video


@pytest.fixture(scope="module")
def whole_run(detector, gap_video, pair_video):
    """predict_video's table (mdhr-run's) of the gap video (--faces largest)
    or the pair (--faces all), once per window mode."""
    tables = {}

    def run(windows: str, faces: str = "largest"):
        if (windows, faces) not in tables:
            video = gap_video[0] if faces == "largest" else pair_video
            tables[windows, faces] = detector.predict_video(video, windows=windows, faces=faces)
        return tables[windows, faces]

    return run


def rows_of(table) -> list[tuple]:
    """Every row as comparable values (scores exact, NaN-free: None without a
    face), with its quality (landmarks, pose, size, frames since detection,
    flags) exact."""
    return [(r.index, r.face_id, r.face.success, None if r.scores is None else r.scores.tobytes(),
             quality_of(r.quality)) for r in table.rows]


def quality_of(quality) -> tuple | None:
    if quality is None:
        return None
    return (None if quality.landmarks is None else quality.landmarks.tobytes(), np.asarray(quality.pose).tobytes(),
            quality.face_size, quality.since_detection, quality.flags)


@pytest.mark.parametrize("windows", WINDOWS)
@pytest.mark.parametrize("faces", choices.FACE_MODES)
def test_a_live_source_fed_from_a_file_equals_mdhr_run(detector, gap_video, pair_video, whole_run, windows, faces):
    video = gap_video[0] if faces == "largest" else pair_video
    live = run_live(detector, str(video), windows, None, faces=faces)
    whole = whole_run(windows, faces)
    assert not live.interrupted and len(whole) > 0
    assert rows_of(live.table) == rows_of(whole)
    # the quality columns are there to compare: landmarks and pose on every face row
    assert all(r.quality.landmarks is not None and np.isfinite(r.quality.pose).all()
               for r in whole.rows if r.face.success)
    assert live.table.model_calls == whole.model_calls


@pytest.mark.parametrize("windows", WINDOWS)
def test_segments_equal_the_whole_run_exactly(detector, gap_video, whole_run, windows):
    """Segments of 8 frames read from frame 0 here (the video is shorter
    than the tracker's warm-up), so the tracker is the whole run's and only
    the windows' context is tested: the stitched rows are bit-identical.
    The overlap costs model calls, measured against the whole run."""
    video, has_face = gap_video
    plan = SegmentPlan(8, WindowPlan.make(windows, detector.bundle.frames))
    segments = plan.segments(len(has_face))
    assert len(segments) == 3 and all(s.read_from == 0 for s in segments)
    if windows == "centred":  # context on both sides of a border
        assert segments[1].scored_from < segments[1].start and segments[0].read_to > segments[0].stop
    results = [predict_segment(detector, video, s, windows) for s in segments]
    stitched = stitch(results, detector.au_names, detector.threshold)
    whole = whole_run(windows)
    assert stitched.complete and rows_of(stitched) == rows_of(whole)
    overlap = stitched.model_calls / whole.model_calls
    print(f"{windows}: {stitched.model_calls} model calls in segments, {whole.model_calls} whole ({overlap:.3f}x)")
    assert 1.0 <= overlap < 1.5


class CallCounter:
    """Counts the calls of a graph runner's method (the real one runs), or
    what ``weigh(*args)`` says each call did."""

    def __init__(self, monkeypatch, owner, name, weigh=lambda *args: 1):
        self.calls = 0
        real = getattr(owner, name)

        def counted(*args, **kwargs):
            self.calls += weigh(*args)
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)


def test_windows_without_a_face_never_run_the_model(detector, gap_video, tmp_path, photo, monkeypatch):
    video, has_face = gap_video
    T, n = detector.bundle.frames, len(has_face)
    whole_model = CallCounter(monkeypatch, detector.runner, "infer")
    # frames through the frame stage, however many a call takes
    frame_stage = CallCounter(monkeypatch, detector.stage_runner, "run_frames", weigh=lambda crops, previous: len(crops))
    clip_stage = CallCounter(monkeypatch, detector.stage_runner, "clip")
    centre_only = CallCounter(monkeypatch, detector.stage_runner, "clip_centre")
    official = detector.predict_video(video, windows="official")
    faced_windows = sum(any(has_face[s:s + T]) for s in range(0, n, T))
    assert whole_model.calls == official.model_calls == faced_windows < n // T
    plan = WindowPlan.make("centred", T)
    starts = {plan.window_of(p) if plan.window_of(p) + T <= n else plan.final_window(p, n)
              for p in range(n) if has_face[p]}
    centred = detector.predict_video(video)
    # each window runs once: at hop 1 in a file, all but the first and last for their centre frame alone
    assert frame_stage.calls == sum(has_face) and clip_stage.calls + centre_only.calls == len(starts)
    assert centre_only.calls >= len(starts) - 2 > 0
    assert centred.model_calls == sum(has_face) + len(starts)
    # A video without any face: nothing runs, in any entry point.
    empty, _ = face_video(tmp_path / "empty.mp4", photo, (Segment("empty", 2 * T),))
    before = (whole_model.calls, frame_stage.calls, clip_stage.calls, centre_only.calls)
    for windows in WINDOWS:
        for faces in choices.FACE_MODES:
            assert detector.predict_video(empty, windows=windows, faces=faces).model_calls == 0
            assert run_live(detector, str(empty), windows, None, faces=faces).table.model_calls == 0
        segments = SegmentPlan(T, WindowPlan.make(windows, T)).segments(2 * T)
        assert len(segments) == 2
        assert all(predict_segment(detector, empty, s, windows).table.model_calls == 0 for s in segments)
    assert (whole_model.calls, frame_stage.calls, clip_stage.calls, centre_only.calls) == before


# -- layout ----------------------------------------------------------------------


def python_files():
    for root in SOURCES:
        yield from sorted(root.rglob("*.py"))


def test_choice_lists_are_defined_once():
    """A tuple, list or set of strings equal to a choice list anywhere but
    choices.py is a retyped copy that will drift."""
    lists = {name: frozenset(value) for name, value in vars(choices).items()
             if isinstance(value, tuple) and len(value) > 1}
    assert {"BACKENDS", "FACE_MODES", "WINDOW_MODES", "FACE_DETECTORS"} <= set(lists)
    retyped = []
    for path in python_files():
        if path == RUNTIME / "choices.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and node.elts and \
                    all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
                found = frozenset(e.value for e in node.elts)
                retyped += [f"{path}:{node.lineno} retypes {name}" for name, value in lists.items() if found == value]
    assert retyped == []


# -- the card --------------------------------------------------------------------


def bundle_with_card(source: Path, folder: Path, change) -> Path:
    """A bundle whose artifacts are ``source``'s and whose card ``change`` edits."""
    folder.mkdir()
    card = json.loads((source / "mdhr.json").read_text())
    change(card)
    (folder / "mdhr.json").write_text(json.dumps(card))
    for name in card["artifacts"].values():
        if name and (source / name).exists():
            os.link(source / name, folder / name)  # a bundle holds its files: a link of the file itself
    return folder


@pytest.mark.parametrize("change, what", [
    (lambda card: card["input"].update(std=[0.229, 0.0, 0.225]), "input.std[1]"),
    (lambda card: card["input"].update(shape=card["input"]["shape"][:3] + [112, 112]), "input.shape[3]"),
    (lambda card: card.update(au_names=card["au_names"][:1] * len(card["au_names"])), "au_names"),
])
def test_card_values_the_runtime_cannot_honour_are_refused(disfa_short_bundle, tmp_path, change, what):
    folder = bundle_with_card(disfa_short_bundle, tmp_path / "edited", change)
    with pytest.raises(MDHRError, match="damaged model card: .*; export the bundle again") as refused:
        load_bundle(folder)
    assert what in str(refused.value) and "\n" not in str(refused.value)


def test_normalisation_comes_from_the_card(disfa_short_bundle, tmp_path):
    from mdhr_runtime.detector import AUDetector

    mean, std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    folder = bundle_with_card(disfa_short_bundle, tmp_path / "other", lambda c: c["input"].update(mean=mean, std=std))
    with AUDetector(folder, backend="onnxruntime") as other:
        normalise = other.scoring().normalise
    pixels = np.array([[[0, 128, 255]]], dtype=np.uint8)
    assert np.allclose(normalise(pixels)[:, 0, 0], (pixels[0, 0] / 255 - 0.5) / 0.25, atol=1e-6)


# -- light start -----------------------------------------------------------------

# Measured 2026-12-02 (scripts/pipeline_startup.py): 0.89 GiB at peak since the
# graphs read their weights from the bundle's shared weights file (1.24 GiB
# with the weights inside each graph, 1.63 GiB when every graph opened).  The
# bound (the 1.0 GB target, with room for other CPUs' kernels) fails if the
# whole-model graph (+0.4 GiB) opens again.
LIGHT_START_BYTES = 1.0 * 2**30


def test_one_image_scores_light(bp4d_bundle, tmp_path):
    """mdhr-run on one image with the BP4D ResNet-50 bundle (default centred
    windows): the whole-model graph never opens and the process stays
    within LIGHT_START_BYTES at its peak."""
    image = DATA / "face.jpg"
    code = ("import sys\n"
            "from mdhr_runtime.cli.run import main\n"
            "import mdhr_runtime.detector as d\n"
            "opened = []\n"
            "real = d.open_choice\n"
            "d.open_choice = lambda *a, **k: opened.append(1) or real(*a, **k)\n"
            "try:\n"
            f"    main([{str(image)!r}, '--model', {str(bp4d_bundle)!r}, '--out', {str(tmp_path / 'x.csv')!r}])\n"
            "except SystemExit as e:\n"
            "    assert e.code == 0, e.code\n"
            # VmHWM is this process's own peak; ru_maxrss would carry over the
            # peak of the (large) test process this one was forked from
            "peak = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
            "print(len(opened), peak * 1024)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    opened, peak = map(int, done.stdout.split())
    print(f"one image: {peak / 2**30:.3f} GiB resident at peak")
    assert opened == 0 and peak <= LIGHT_START_BYTES
    assert (tmp_path / "x.csv").read_text().count("\n") == 2
