"""A long mdhr-live session in a real browser, measured: Chromium (headless,
its camera a looped video of the test face at a set frame rate) drives the
page for ``--seconds``; the page's own latencies (capture to scores) and the
server's frames/s and strides are summarised per minute, so a latency that
grows shows.  Optionally saves a screenshot of the page.

    python -m scripts.live_session --model BUNDLE --photo tests/data/face.jpg --seconds 330 --out live.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from mdhr_runtime.detector import AUDetector
from mdhr_runtime.faces.multitrack import DEFAULT_MIN_FACE
from mdhr_runtime.live.server import LiveServer
from mdhr_runtime.live.session import LiveOptions
from tests.support.browser import chromium, fake_camera_flags
from tests.support.footage import write_y4m
from tests.support.synthetic import FootageMaker, Segment


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def summary(latencies: list[float]) -> dict:
    return {"count": len(latencies), "median_ms": round(percentile(latencies, 50), 1),
            "p95_ms": round(percentile(latencies, 95), 1)}


def measure(model: Path, photo: Path, seconds: float, fps: int, faces: str, screenshot: Path | None) -> dict:
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    frames = [f.rgb for f in FootageMaker(rgb, size=(640, 360)).frames((Segment("moving", 3 * fps),), fps=fps)]
    with tempfile.TemporaryDirectory() as folder, AUDetector(model, backend="onnxruntime") as detector:
        camera = write_y4m(Path(folder) / "camera.y4m", frames, fps)
        _ = detector.stage_runner
        with LiveServer(detector, LiveOptions("centred", None, faces, DEFAULT_MIN_FACE)) as server, \
                chromium(fake_camera_flags(camera)) as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            page.goto(server.url)
            while not page.evaluate("window.mdhrLive && window.mdhrLive.hello !== null"):
                time.sleep(0.2)
            page.click("#start")
            start, strides = time.monotonic(), []
            while time.monotonic() - start < seconds:
                time.sleep(1.0)
                strides.append(page.evaluate("window.mdhrLive.stride"))
            if screenshot is not None:
                page.screenshot(path=str(screenshot))
            state = page.evaluate("({latencies: window.mdhrLive.latencies, times: window.mdhrLive.latencyTimes, "
                                  "sent: window.mdhrLive.framesSent, notSent: window.mdhrLive.framesNotSent})")
            session = server.session
            scored, skipped = session.paced.count, session.paced.skipped
            page.click("#stop")
            session.done.wait(120)
    latencies, times = state["latencies"], np.asarray(state["times"]) / 1000.0
    minutes = [summary([ms for ms, t in zip(latencies, times) if m * 60 <= t < (m + 1) * 60])
               for m in range(int(np.ceil(seconds / 60)))]
    return {"seconds": seconds, "camera_fps": fps, "faces": faces, "frames_scored": scored,
            "scored_fps": round(scored / seconds, 2), "frames_sent_by_page": state["sent"],
            "frames_not_sent_by_page": state["notSent"], "frames_skipped_by_server": skipped,
            "stride": {"median": statistics.median(strides), "min": min(strides), "max": max(strides)},
            "latency": summary(latencies), "latency_per_minute": minutes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--photo", type=Path, default=Path("tests/data/face.jpg"))
    parser.add_argument("--seconds", type=float, default=330)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--faces", default="largest")
    parser.add_argument("--screenshot", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = measure(args.model, args.photo, args.seconds, args.fps, args.faces, args.screenshot)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
