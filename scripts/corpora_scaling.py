"""Corpus throughput: mdhr-batch with 1 and 2 workers against mdhr-run
called once per video in sequence (the README's scaling table).

    python -m scripts.corpora_scaling BUNDLE [--videos 4] [--frames 32]

Makes a corpus of synthetic face videos (640x360, from tests/data/face.jpg),
times each command end to end (Ray start-up and model loading included, as
a user waits for them) and prints a markdown table of frames per second.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

from tests.support.synthetic import FootageMaker, Segment, write_video


def make_corpus(folder: Path, videos: int, frames: int, photo: Path) -> list[Path]:
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    paths = []
    for k in range(videos):
        maker = FootageMaker(rgb, seed=k)
        path = folder / f"video{k}.mp4"
        write_video(path, [f.rgb for f in maker.frames((Segment("clean", frames),))])
        paths.append(path)
    return paths


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bundle")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--photo", default="tests/data/face.jpg")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        videos = make_corpus(tmp, args.videos, args.frames, Path(args.photo))
        total = args.videos * args.frames
        rows = []
        seconds = sum(timed([str(bin_dir / "mdhr-run"), str(v), "--model", args.bundle, "--out",
                             str(tmp / f"{v.stem}.csv")]) for v in videos)
        rows.append(("mdhr-run once per video, in sequence (ORT default threads)", seconds))
        for workers, threads in ((1, 2), (2, 1)):
            out = tmp / f"out{workers}"
            seconds = timed([str(bin_dir / "mdhr-batch"), *map(str, videos), "--model", args.bundle, "--out",
                             str(out), "--workers", str(workers), "--threads-per-worker", str(threads)])
            rows.append((f"mdhr-batch --workers {workers} --threads-per-worker {threads}", seconds))
            shutil.rmtree(out)
    base = rows[0][1]
    print(f"{args.videos} videos x {args.frames} frames ({total} frames), end to end\n")
    print("| command | seconds | frames/s | vs mdhr-run in sequence |\n|---|---:|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {total / seconds:.2f} | {base / seconds:.2f}x |")


if __name__ == "__main__":
    main()
