"""Per-row face quality: head pose against frames of known pose, landmarks
against the aligned-crop step, the flags and their thresholds, what a
detector without landmarks (Haar) and aligned crops report, the columns'
round trip through the CSV, and bad thresholds refused in one line."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from mdhr.errors import MDHRError
from mdhr_runtime import choices
from mdhr_runtime.cli.common import command_flags
from mdhr_runtime.cli.run import main as run_main
from mdhr_runtime.crops.crop import CroppedFrame
from mdhr_runtime.faces.detection import HaarDetector, MTCNNDetector
from mdhr_runtime.faces.pose import euler_xyz, head_pose, rotation_xyz
from mdhr_runtime.faces.quality import MAX_GAP_FRAMES, QualityOptions, assess
from mdhr_runtime.faces.tracking import FaceResult, FaceTracker
from mdhr_runtime.results.readback import read_csv
from mdhr_runtime.results.table import QUALITY_COLUMNS, FrameTable
from mdhr_runtime.sources.frames import FrameSource
from tests.support.footage import face_video
from tests.support.posed import flagged_share, landmark_agreement, pose_errors
from tests.support.synthetic import FootageMaker, Segment


@pytest.fixture(scope="module")
def mtcnn():
    return MTCNNDetector()


@pytest.fixture(scope="module")
def measured(photo, mtcnn):
    return pose_errors(photo, detector=mtcnn)


# -- head pose --------------------------------------------------------------------


def test_pose_angles_follow_openface_convention():
    """R = Rx(pitch) @ Ry(yaw) @ Rz(roll), and back."""
    for angles in [(0.1, -0.4, 0.3), (-0.5, 0.2, -1.0), (0.0, 0.0, 0.0)]:
        assert np.allclose(euler_xyz(rotation_xyz(*angles)), angles, atol=1e-12)


def test_in_plane_roll_is_measured_within_3_degrees(measured):
    """The photo rotated in-plane: the roll is known exactly."""
    _, rolls = measured
    for error in rolls:
        assert error.estimate is not None, error.truth
        assert abs(error.axis_errors[2]) < 3.0, error


def test_rendered_turns_are_measured_with_the_right_sign_and_size(measured):
    """The photo on a generic 3-D head turned by known angles (the limits
    are the measured errors plus a margin; docs/running.md has the table)."""
    rendered, _ = measured
    assert all(e.estimate is not None for e in rendered)
    for error in rendered:
        pitch, yaw, _ = error.truth
        for axis, truth in ((0, pitch), (1, yaw)):
            if truth and (pitch == 0 or yaw == 0):  # one axis turned: its sign and size
                assert math.copysign(1, error.estimate[axis]) == math.copysign(1, truth), error
                assert abs(error.estimate[axis] - truth) < 12.0, error
        assert error.angle_error < 16.0, error
    assert np.mean([e.angle_error for e in rendered]) < 10.0


def test_pose_without_usable_landmarks_is_nan():
    assert all(math.isnan(v) for v in head_pose(None))
    assert all(math.isnan(v) for v in head_pose(np.zeros((5, 2))))  # all points on one spot
    assert all(math.isnan(v) for v in head_pose(np.full((5, 2), np.nan)))


# -- landmarks --------------------------------------------------------------------


def test_landmarks_agree_with_those_on_the_aligned_crop(photo, mtcnn):
    """Each row's landmarks (frame pixels) against MTCNN's on the crop the
    model sees, mapped back: within a few hundredths of the eye distance on
    an upright face, within a tenth with the head rolled up to 25 degrees
    (MTCNN's points move with roll; the crop is levelled)."""
    frames = [f.rgb for f in FootageMaker(photo).frames((Segment("clean", 30), Segment("roll", 30)))]
    distances = landmark_agreement(frames, mtcnn)
    print(f"landmarks against the aligned crop's: median {np.median(distances):.3f}, 95th percentile "
          f"{np.percentile(distances, 95):.3f} eye distances, {len(distances)} frames")
    assert len(distances) >= 55
    assert np.median(distances[:30]) < 0.05 and np.percentile(distances, 95) < 0.12


# -- flags ------------------------------------------------------------------------


def found(**changes) -> FaceResult:
    points = np.array([[40, 60], [80, 60], [60, 82], [46, 100], [74, 100]], dtype=np.float32)
    values = dict(success=True, confidence=0.999, box=(20.0, 30.0, 80.0, 100.0), landmarks=points,
                  since_detection=0, since_missing=None)
    return FaceResult(**{**values, **changes})


def test_each_threshold_flags_its_reason():
    options = QualityOptions()
    assert assess(found(), options).flags == ()
    assert assess(found(box=(0.0, 0.0, 50.0, 60.0)), options).flags == ("face<64px",)
    assert assess(found(confidence=0.93), options).flags == ("low-confidence",)
    assert assess(found(since_missing=8), options).flags == ("track-gap",)
    assert assess(found(since_missing=9), options).flags == ()
    turned = found(landmarks=np.array([[30, 60], [62, 60], [34, 82], [34, 100], [58, 100]], dtype=np.float32))
    yaw = math.degrees(assess(turned, options).pose[1])
    assert yaw > 35 and assess(turned, options).flags == ("yaw>35",)
    assert assess(turned, QualityOptions(max_yaw_deg=round(yaw) + 1)).flags == ()
    assert assess(found(box=(0.0, 0.0, 50.0, 60.0), confidence=0.5), QualityOptions(min_face_px=40,
                                                                                      min_confidence=0)).flags == ()
    assert assess(FaceResult.missing(), options) is None
    # every reason is named in the one choice list, in its order
    assert [r.split(">")[0].split("<")[0] for r in assess(found(
        landmarks=turned.landmarks, box=(0.0, 0.0, 50.0, 60.0), confidence=0.5, since_missing=1), options).flags] \
        == ["yaw", "face", "low-confidence", "track-gap"]
    assert set(choices.QUALITY_FLAGS) >= {"yaw", "pitch", "face", "low-confidence", "track-gap", "no-pose"}


def test_a_face_without_landmarks_has_no_pose_and_says_so(photo):
    """Haar finds no landmarks: empty landmark and pose cells and the no-pose
    flag; aligned crops (no detector) are not flagged for it."""
    tracker = FaceTracker(HaarDetector())
    face = tracker.update(photo, 0.0)
    quality = assess(face, QualityOptions())
    assert face.success and quality.landmarks is None and all(math.isnan(v) for v in quality.pose)
    assert "no-pose" in quality.flags and quality.since_detection == 0
    aligned = assess(FaceResult(True, 1.0, (0.0, 0.0, 224.0, 224.0)), QualityOptions())
    assert aligned.flags == () and aligned.since_detection is None
    table = FrameTable(["AU01"])
    table.add(CroppedFrame(0, 0.0, face, None), np.zeros(1), quality=quality)
    row = table._cells(table.rows[0])[-len(QUALITY_COLUMNS):]
    assert row[:13] == [""] * 13 and row[-2:] == ["1", "no-pose"]


def test_frames_since_detection_and_the_gap_follow_the_tracker(tmp_path, photo, mtcnn):
    """A face, 6 frames without one, the face again: the rows after the gap
    are flagged for --flag-gap frames; the count since the full search runs
    between the searches (every 30th frame, and on finding a face again)."""
    video, has_face = face_video(tmp_path / "gap.mp4", photo, (Segment("clean", 40), Segment("empty", 6),
                                                               Segment("clean", 20)))
    tracker = FaceTracker(mtcnn)
    faces = [tracker.update(frame.rgb, frame.timestamp) for frame in FrameSource(video)]
    assert [f.success for f in faces] == has_face
    since = [f.since_detection for f in faces]
    assert since[:40] == [k % 30 for k in range(40)]
    assert since[46:] == [k - 46 if k < 60 else k - 60 for k in range(46, 66)]  # found again, then the grid
    flags = [assess(f, QualityOptions(gap_frames=5)) for f in faces]
    gap = [q is not None and "track-gap" in q.flags for q in flags]
    assert gap == [False] * 46 + [True] * 5 + [False] * 15


def test_flagged_share_on_the_test_footage(photo):
    """The project's synthetic footage: small faces and the frames after its
    face-less stretches are flagged, nothing else (it holds no head turns)."""
    frames = [f.rgb for f in FootageMaker(photo).frames((
        Segment("clean", 40), Segment("empty", 10), Segment("small", 30), Segment("tiny", 30)))]
    rows, flagged, reasons = flagged_share(frames)
    print(f"{rows} rows with a face, {flagged} flagged ({flagged / rows:.1%}): {dict(reasons)}")
    assert set(reasons) <= {"face", "track-gap"} and reasons["track-gap"] == 8
    assert reasons["face"] >= 30  # the tiny face (about 47 pixels) throughout


# -- options ----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(field=st.sampled_from(["max_yaw_deg", "max_pitch_deg", "min_face_px", "min_confidence", "gap_frames"]),
       value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6)))
def test_thresholds_outside_their_range_are_refused_in_one_line(field, value):
    limits = {"max_yaw_deg": (0, 90), "max_pitch_deg": (0, 90), "min_face_px": (0, 10000),
              "min_confidence": (0, 1), "gap_frames": (0, MAX_GAP_FRAMES)}
    low, high = limits[field]
    whole = field in ("min_face_px", "gap_frames")
    good = isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high and \
        (not whole or value == int(value))
    if good:
        QualityOptions(**{field: value})
        return
    with pytest.raises(MDHRError) as refused:
        QualityOptions(**{field: value})
    assert "\n" not in str(refused.value) and str(refused.value).startswith(field)
    # a command's user reads the flag
    flags = command_flags(run_main)
    assert refused.value.phrased(flags).startswith(flags[field]) and flags[field].startswith("--flag-")


@pytest.mark.parametrize("option, value", [("--flag-yaw", "120"), ("--flag-gap", "500"), ("--flag-face", "-3"),
                                           ("--flag-confidence", "-1")])
def test_mdhr_run_refuses_a_bad_threshold_before_work(tmp_path, option, value):
    result = CliRunner().invoke(run_main, ["missing.mp4", "--model", str(tmp_path / "no-bundle"), "--out",
                                           str(tmp_path / "out.csv"), option, value])
    assert result.exit_code == 2
    line = result.output.strip()
    assert line.count("\n") == 0 and line.startswith(f"error: {option} {float(value):g}")
    assert not (tmp_path / "out.csv").exists()


def test_quality_columns_read_back(tmp_path, photo, mtcnn):
    tracker = FaceTracker(mtcnn)
    table = FrameTable(["AU01", "AU02"])
    for k, rgb in enumerate([photo, np.zeros_like(photo), photo]):
        face = tracker.update(rgb, k / 30)
        table.add(CroppedFrame(k, k / 30, face, None), np.zeros(2) if face.success else None,
                  quality=assess(face, QualityOptions()))
    back = read_csv(table.write_csv(tmp_path / "q.csv"))
    for a, b in zip(table.rows, back.rows):
        assert (a.quality is None) == (b.quality is None)
        if a.quality is not None:
            assert np.abs(a.quality.landmarks - b.quality.landmarks).max() <= 0.05
            assert np.allclose(a.quality.pose, b.quality.pose, atol=5e-5)
            assert (a.quality.flags, a.quality.since_detection) == (b.quality.flags, b.quality.since_detection)
    assert [r.quality.flags for r in back.rows if r.quality] == [(), ("track-gap",)]


@settings(max_examples=80, deadline=None)
@given(column=st.sampled_from(QUALITY_COLUMNS), text=st.text(max_size=30))
def test_damaged_quality_cells_are_refused_in_one_line_or_read_as_data(tmp_path_factory, column, text):
    """Any text in any quality cell of a CSV: read as data, or refused with
    one line naming the file and line, never another exception."""
    folder = tmp_path_factory.mktemp("damaged")
    table = FrameTable(["AU01"])
    face = found(since_detection=2)
    table.add(CroppedFrame(0, 0.0, face, None), np.zeros(1), quality=assess(face, QualityOptions()))
    path = table.write_csv(folder / "q.csv")
    with open(path, newline="") as handle:
        header, row = list(csv.reader(handle))
    row[header.index(column)] = text
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([header, row])
    try:
        back = read_csv(path)
    except MDHRError as refused:
        assert "\n" not in str(refused) and "line 2" in str(refused)
        return
    assert len(back.rows) == 1
