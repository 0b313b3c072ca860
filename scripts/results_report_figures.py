"""The figures of docs/results.md: overlay cost per frame, report size and
Chromium load time for a 472-frame video and an hour-long one, and the
screenshot.

    python -m scripts.results_report_figures --model BUNDLE --out DIR [--screenshot docs/report_screenshot.png]

The 472-frame video is footage made from tests/data/face.jpg (the first 472
frames of ``synthetic.DEFAULT_SEGMENTS``: every condition, two face-less
stretches), scored by ``mdhr-run --report --overlay``.  The hour-long one
is that footage repeated for an hour at 160x90, with the scored table
repeated to match (boxes scaled): real model outputs, though not from
scoring an hour, which would take this CPU half a day.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

FOOTAGE_FRAMES = 472
FPS = 30.0


def make_footage(path: Path, photo_path: Path) -> list[np.ndarray]:
    from tests.support.synthetic import FootageMaker, write_video

    photo = cv2.cvtColor(cv2.imread(str(photo_path)), cv2.COLOR_BGR2RGB)
    frames = [f.rgb for f in FootageMaker(photo, size=(640, 360)).frames()][:FOOTAGE_FRAMES]
    write_video(path, frames, fps=FPS)
    return frames


def score(video: Path, bundle: Path, out: Path, threshold: float | None) -> dict:
    command = [sys.executable, "-c", "from mdhr_runtime.cli.run import main; main()", str(video), "--model",
               str(bundle), "--out", str(out / "footage.csv"), "--overlay", str(out / "footage_overlay.mp4"),
               "--report", str(out / "footage.html"), "--backend", "onnxruntime"]
    command += [] if threshold is None else ["--threshold", str(threshold)]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return {"mdhr_run_seconds": round(time.perf_counter() - start, 1)}


def overlay_cost(table, video: Path, out: Path) -> dict:
    from mdhr_runtime.results.overlay import write_overlay

    stats = write_overlay(table, video, out / "overlay_timing.mp4")
    return {"frames": stats.frames, "ms_per_frame": round(stats.ms_per_frame, 2),
            "drawing_ms_per_frame": round(1000 * stats.seconds_drawing / stats.frames, 2),
            "encoding_ms_per_frame": round(1000 * stats.seconds_encoding / stats.frames, 2),
            "note": "decode time not included; encoding includes RGB->YUV conversion"}


def hour_long(frames: list[np.ndarray], table, out: Path, hours: float) -> tuple[Path, object]:
    """The footage repeated for ``hours`` at 160x90 (H.264) and the table to match."""
    import av

    from mdhr_runtime.faces.tracking import FaceResult
    from mdhr_runtime.results.table import FrameRow, FrameTable

    small = [cv2.resize(f, (160, 90), interpolation=cv2.INTER_AREA) for f in frames]
    total = int(hours * 3600 * FPS)
    path = out / "hour.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(int(FPS)), options={"preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = 160, 90, "yuv420p"
        for k in range(total):
            frame = av.VideoFrame.from_ndarray(small[k % len(small)], format="rgb24")
            frame.pts = k
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    long = FrameTable(table.au_names, table.threshold)
    for k in range(total):
        row = table.rows[k % len(table.rows)]
        face = row.face
        if face.success:
            face = FaceResult(True, face.confidence, tuple(v / 4 for v in face.box))
        long.rows.append(FrameRow(k, k / FPS, face, row.scores))
    return path, long


def load_time(html: Path, repeats: int = 3) -> dict:
    """Seconds until the page's script ran (timeline painted) and until the
    video can play, best of ``repeats`` fresh pages."""
    from tests.support.browser import chromium, open_report

    scripted, playable = [], []
    with chromium() as browser:
        version = browser.version
        for _ in range(repeats):
            start = time.perf_counter()
            opened = open_report(browser, html)
            scripted.append(time.perf_counter() - start)
            opened.page.wait_for_function("document.getElementById('video') === null || "
                                          "document.getElementById('video').readyState >= 3", timeout=120_000)
            playable.append(time.perf_counter() - start)
            assert opened.console_errors == [] and opened.remote_requests == [], (opened.console_errors,
                                                                                  opened.remote_requests)
            opened.page.close()
    return {"chromium": version, "timeline_ready_s": round(min(scripted), 2),
            "video_playable_s": round(min(playable), 2)}


def screenshot(html: Path, path: Path, column: int) -> None:
    from tests.support.browser import chromium, open_report

    with chromium() as browser:
        opened = open_report(browser, html, width=1100, height=1300)
        page = opened.page
        page.wait_for_function("document.getElementById('video').readyState >= 2")
        box = page.locator("canvas.timeline").first.bounding_box()
        columns = page.evaluate("window.mdhrReport.columns")
        page.mouse.click(box["x"] + (column + 0.5) / columns * box["width"], box["y"] + box["height"] / 2)
        page.wait_for_function("!document.getElementById('video').seeking && "
                               "document.getElementById('video').readyState >= 3")
        page.wait_for_timeout(1500)  # the player's loading spinner fades out
        page.screenshot(path=str(path), full_page=False)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--photo", type=Path, default=Path(__file__).parents[1] / "tests" / "data" / "face.jpg")
    parser.add_argument("--threshold", type=float, help="mdhr-run --threshold (an untrained model's scores sit "
                        "close together: a threshold among them shows the highlighting)")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args(argv)
    from mdhr_runtime.results.readback import read_csv
    from mdhr_runtime.results.report import write_report

    args.out.mkdir(parents=True, exist_ok=True)
    figures: dict = {"uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}
    video = args.out / "footage.mp4"
    frames = make_footage(video, args.photo)
    figures["run"] = score(video, args.model, args.out, args.threshold)
    table = read_csv(args.out / "footage.csv", args.threshold if args.threshold is not None else 0.5)
    figures["overlay_640x360"] = overlay_cost(table, video, args.out)
    html = args.out / "footage.html"
    figures["report_472"] = {"html_bytes": html.stat().st_size, "video": "embedded", **load_time(html)}
    if args.screenshot:
        screenshot(html, args.screenshot, column=100)
    start = time.perf_counter()
    long_video, long_table = hour_long(frames, table, args.out, args.hours)
    figures["hour_video"] = {"seconds_to_make": round(time.perf_counter() - start, 1),
                             "bytes": long_video.stat().st_size, "frames": len(long_table)}
    start = time.perf_counter()
    info = write_report(long_table, long_video, args.out / "hour.html", {"input": "hour.mp4"})
    figures["report_hour"] = {"write_seconds": round(time.perf_counter() - start, 1), "html_bytes": info.bytes,
                              "video": info.video, "frames_per_column": info.frames_per_column,
                              "columns": math.ceil(len(long_table) / info.frames_per_column),
                              **load_time(info.path)}
    beside = args.out / "hour-video.mp4"
    if beside.exists():
        figures["report_hour"]["annotated_video_bytes"] = beside.stat().st_size
    (args.out / "figures.json").write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
