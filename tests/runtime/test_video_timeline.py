"""Whether a video was read to its end, from its presentation timeline:
real H.264 files made with PyAV (B-frames, an edit list hiding priming
samples, variable frame rate, Matroska without a frame count, a display
rotation) read complete; real cuts at 40% and 90% of the bytes, and noise
over the middle, read incomplete."""
from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from mdhr.errors import MDHRError
from mdhr_runtime.sources.frames import FrameSource
from mdhr_runtime.sources.timeline import Timeline
from tests.support.synthetic import FootageMaker, Segment, write_video
from tests.support.videos import cut, damaged, h264, moving_bar, with_edit_list

# Irregular intervals (ms), as a phone that drops to a lower rate in dim light writes them.
VFR_TIMES = [0, 33, 66, 133, 166, 266, 300, 333, 433, 466, 500, 633, 666, 700, 800, 833]


def read_all(path) -> tuple[FrameSource, list]:
    source = FrameSource(path)
    return source, list(source)


@pytest.fixture(scope="module")
def edit_list_mp4(tmp_path_factory):
    """95 frames shown, 98 samples stored: a phone-style file."""
    folder = tmp_path_factory.mktemp("edit")
    plain = h264(folder / "plain.mp4", moving_bar(98))
    return with_edit_list(plain, folder / "phone.mp4", hidden=3)


def test_edit_list_and_b_frames_read_complete(edit_list_mp4):
    capture = cv2.VideoCapture(str(edit_list_mp4))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 98  # samples stored, not frames shown
    capture.release()
    source, frames = read_all(edit_list_mp4)
    assert source.frame_count == 98 and len(frames) == 95
    assert not source.truncated and source.shortfall == ""
    # the hidden samples are the first three: frame 0 shows the bar of sample 3
    assert int(np.argmax(frames[0].rgb[50, :, 0])) == 15
    assert frames[-1].timestamp == pytest.approx(94 / 30, abs=1e-3)


def test_variable_frame_rate_keeps_its_presentation_times(detector, tmp_path):
    path = h264(tmp_path / "vfr.mp4", moving_bar(len(VFR_TIMES)), times_ms=VFR_TIMES)
    source, frames = read_all(path)
    assert not source.truncated
    assert [round(f.timestamp * 1000) for f in frames] == VFR_TIMES
    table = detector.predict_video(path)
    with open(table.write_csv(tmp_path / "vfr.csv"), newline="") as handle:
        stamps = [float(row["timestamp"]) for row in csv.DictReader(handle)]
    assert stamps == [t / 1000 for t in VFR_TIMES] and table.complete


def test_matroska_without_a_frame_count_reads_complete(tmp_path):
    """Matroska stores no count (OpenCV guesses duration x rate: 26 for these
    16 frames); whole files read complete, at constant or variable rate."""
    import av

    for name, times in (("cfr.mkv", None), ("vfr.mkv", VFR_TIMES)):
        path = h264(tmp_path / name, moving_bar(16), times_ms=times)
        with av.open(str(path)) as container:
            assert container.streams.video[0].frames == 0
        source, frames = read_all(path)
        assert len(frames) == 16 and not source.truncated, source.shortfall
    capture = cv2.VideoCapture(str(tmp_path / "vfr.mkv"))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) > 20
    capture.release()


def test_rotated_video_is_read_as_displayed_and_its_face_found(detector, photo, tmp_path):
    """A phone held upright stores its frames sideways and a 90 degree turn
    in the display matrix; frames, faces and boxes are in the upright view."""
    upright = np.full((320, 240, 3), 90, np.uint8)
    upright[40:280, 20:220] = cv2.resize(photo, (200, 240), interpolation=cv2.INTER_AREA)
    stored = np.rot90(upright, k=1)  # turned a quarter anticlockwise: the display turns it back clockwise
    path = h264(tmp_path / "portrait.mp4", [stored] * 6, rotation=90)
    _, frames = read_all(path)
    assert frames[0].rgb.shape == upright.shape
    assert np.abs(frames[0].rgb.astype(int) - upright).mean() < 4
    table = detector.predict_video(path)
    assert all(row.face.success for row in table.rows)
    # the photo's face (tests.support.synthetic.PHOTO_FACE_BOX) scaled into the
    # upright frame: x 86, y 104, 69 x 107 pixels
    x, y, width, height = table.rows[-1].face.box
    assert abs(x - 86) < 15 and abs(y - 104) < 20 and 45 < width < 100 and 70 < height < 150, (x, y, width, height)


@pytest.mark.parametrize("suffix,faststart", [(".mp4", True), (".mkv", False)])
@pytest.mark.parametrize("fraction", [0.4, 0.9])
def test_real_cuts_read_incomplete(tmp_path, suffix, faststart, fraction):
    whole = h264(tmp_path / f"whole{suffix}", moving_bar(90), faststart=faststart)
    source, frames = read_all(cut(whole, tmp_path / f"cut{suffix}", fraction))
    assert 0 < len(frames) < 90 and source.truncated
    assert "decoding stopped at" in source.shortfall and "of the 3.00 s the container declares" in source.shortfall
    assert "\n" not in source.shortfall


def test_an_mp4_cut_before_its_index_is_refused_in_one_line(tmp_path):
    """Recorders write the MP4 index (moov) last: a recording cut short has
    none and cannot be opened at all."""
    whole = h264(tmp_path / "whole.mp4", moving_bar(30))
    with pytest.raises(MDHRError, match="cut short before its index was written") as error:
        FrameSource(cut(whole, tmp_path / "cut.mp4", 0.9))
    assert "\n" not in str(error.value)


def test_noise_over_the_middle_reads_incomplete(tmp_path):
    whole = h264(tmp_path / "whole.mp4", moving_bar(90), faststart=True)
    source, frames = read_all(damaged(whole, tmp_path / "damaged.mp4"))
    assert source.truncated and "decoding failed at" in source.shortfall and len(frames) < 90


def test_pixels_equal_opencvs(photo, tmp_path):
    """PyAV decodes what OpenCV's VideoCapture decoded, to the bit (both
    convert with swscale), so the model sees the same frames as before."""
    frames = [f.rgb for f in FootageMaker(photo, size=(160, 120)).frames([Segment("clean", 6)])]
    paths = [tmp_path / "a.avi", tmp_path / "b.mp4", h264(tmp_path / "c.mp4", frames)]
    write_video(paths[0], frames, codec="MJPG")
    write_video(paths[1], frames, codec="mp4v")
    for path in paths:
        capture = cv2.VideoCapture(str(path))
        for frame in FrameSource(path):
            ok, bgr = capture.read()
            assert ok and np.array_equal(frame.rgb, bgr[..., ::-1]), path
        capture.release()


def test_the_rule_allows_two_frames_and_no_more():
    def verdict(last_frame_time, declared_end=1.0, errors=0):
        timeline = Timeline(declared_end, 0.1)
        for time in np.arange(0.0, last_frame_time + 1e-9, 0.1):
            timeline.frame(float(time), 0.1)
        for _ in range(errors):
            timeline.error("Invalid data found when processing input")
        return timeline.shortfall(0.0)

    assert verdict(0.9) == "" and verdict(0.7) == ""  # ends at 1.0; two frames short
    assert verdict(0.6) == "decoding stopped at 0.70 s of the 1.00 s the container declares"
    assert verdict(0.3, declared_end=None) == ""  # nothing declared: only errors can tell
    assert verdict(0.9, errors=2) == ("decoding failed at 0.90 s (Invalid data found when processing input, "
                                      "and 1 more time(s))")
