"""FrameSource on real files written by OpenCV: videos (mp4v, MJPG, grey,
odd sizes), image folders, single images, and broken inputs."""
from __future__ import annotations

import inspect

import cv2
import numpy as np
import pytest

from mdhr.errors import MDHRError
from mdhr_runtime.sources.frames import FrameSource, natural_key, to_rgb
from tests.support import DATA
from tests.support.synthetic import write_video


def coloured_frames(n: int, width: int, height: int) -> list[np.ndarray]:
    """Frames whose index is readable from their colour, to check order."""
    frames = []
    for i in range(n):
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        frame[..., 0] = (10 * i) % 250  # red encodes the index
        frame[..., 1] = 128
        frame[: height // 2, : width // 2, 2] = 255  # a blue corner: RGB vs BGR check
        frames.append(frame)
    return frames


@pytest.mark.parametrize("codec,suffix", [("mp4v", ".mp4"), ("MJPG", ".avi")])
def test_video_streams_rgb_frames_in_order(tmp_path, codec, suffix):
    path = tmp_path / f"clip{suffix}"
    write_video(path, coloured_frames(12, 160, 96), fps=25.0, codec=codec)
    source = FrameSource(path)
    assert source.kind == "video"
    assert source.fps == pytest.approx(25.0)
    assert source.frame_count == 12
    frames = list(source)
    assert [f.index for f in frames] == list(range(12))
    assert all(f.rgb.shape == (96, 160, 3) and f.rgb.dtype == np.uint8 for f in frames)
    # Red channel carries the index, blue the top-left corner: colours survived in RGB order.
    reds = [float(f.rgb[60:90, 100:150, 0].mean()) for f in frames]
    assert np.allclose(reds, [10 * i for i in range(12)], atol=6)
    assert frames[0].rgb[5:40, 5:60, 2].mean() > 200 and frames[0].rgb[60:90, 100:150, 2].mean() < 40
    times = [f.timestamp for f in frames]
    assert times[0] == 0.0
    assert np.allclose(np.diff(times), 1 / 25.0, atol=2e-3)


def test_video_is_streamed_not_loaded(tmp_path):
    path = tmp_path / "long.avi"
    write_video(path, coloured_frames(40, 64, 48), codec="MJPG")
    iterator = iter(FrameSource(path))
    # A generator: frames come one at a time, so memory does not grow with length.
    assert inspect.isgenerator(iterator)
    first = next(iterator)
    assert first.index == 0
    iterator.close()  # releases the capture early


def test_grey_video_comes_out_rgb(tmp_path):
    grey = [np.full((120, 160), 40 + 5 * i, dtype=np.uint8) for i in range(6)]
    path = tmp_path / "grey.avi"
    write_video(path, grey, codec="MJPG")
    frames = list(FrameSource(path))
    assert len(frames) == 6
    for i, frame in enumerate(frames):
        assert frame.rgb.shape == (120, 160, 3)
        assert abs(float(frame.rgb.mean()) - (40 + 5 * i)) < 4
        assert np.array_equal(frame.rgb[..., 0], frame.rgb[..., 2])


def test_odd_sized_grey_image_comes_out_rgb(tmp_path):
    # OpenCV's video writers round sizes down to even, so odd sizes are
    # tested with an image (decoders hand odd-sized video frames over alike).
    path = tmp_path / "odd.png"
    cv2.imwrite(str(path), np.full((121, 161), 77, np.uint8))
    (frame,) = list(FrameSource(path))
    assert frame.rgb.shape == (121, 161, 3) and frame.rgb.dtype == np.uint8
    assert int(frame.rgb[60, 80, 1]) == 77


def test_folder_is_read_in_natural_order_with_mixed_formats(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    order = [1, 2, 10, 11]
    for i in order:
        value = 20 * i
        if i == 2:  # a grey PNG
            cv2.imwrite(str(folder / f"frame{i}.png"), np.full((50, 70), value, np.uint8))
        elif i == 10:  # a 16-bit PNG
            cv2.imwrite(str(folder / f"frame{i}.png"), np.full((50, 70, 3), value * 257, np.uint16))
        else:
            cv2.imwrite(str(folder / f"frame{i}.png"), np.full((50, 70, 3), value, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    source = FrameSource(folder, fps=10)
    assert source.kind == "images" and source.frame_count == 4
    frames = list(source)
    assert [round(float(f.rgb.mean()) / 20) for f in frames] == order
    assert all(f.rgb.shape == (50, 70, 3) and f.rgb.dtype == np.uint8 for f in frames)
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_single_image(tmp_path):
    frames = list(FrameSource(DATA / "face.jpg"))
    assert len(frames) == 1
    assert frames[0].rgb.shape == (562, 572, 3)
    bgr = cv2.imread(str(DATA / "face.jpg"))
    assert np.array_equal(frames[0].rgb, bgr[..., ::-1])


def test_natural_key_and_to_rgb():
    names = ["img10.png", "img2.png", "IMG1.png"]
    assert sorted(names, key=natural_key) == ["IMG1.png", "img2.png", "img10.png"]
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 0] = 255  # blue in BGRA
    assert to_rgb(bgra)[0, 0].tolist() == [0, 0, 255]


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(MDHRError, match="not found"):
        FrameSource(tmp_path / "nope.mp4")


def test_empty_video_file_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(MDHRError, match="empty"):
        FrameSource(path)


def test_corrupt_video_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(MDHRError) as error:
        list(FrameSource(path))
    message = str(error.value)
    assert "broken.mp4" in message and "\n" not in message


def test_truncated_video_keeps_the_decodable_part(tmp_path):
    path = tmp_path / "cut.avi"
    write_video(path, coloured_frames(30, 64, 48), codec="MJPG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    frames = list(FrameSource(path))
    assert 0 < len(frames) < 30


def test_empty_folder_and_bad_image_are_clear_errors(tmp_path):
    with pytest.raises(MDHRError, match="no images"):
        FrameSource(tmp_path)
    (tmp_path / "a.jpg").write_bytes(b"definitely not a jpeg")
    with pytest.raises(MDHRError, match="a.jpg"):
        list(FrameSource(tmp_path))


def test_bad_fps_is_rejected(tmp_path):
    with pytest.raises(MDHRError, match="frame rate"):
        FrameSource(DATA / "face.jpg", fps=0)
