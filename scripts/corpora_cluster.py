"""What a Ray cluster costs and gains mdhr-batch, on this machine:

* throughput of ``mdhr-batch --address`` on one node with 2 CPUs against
  two nodes with 1 CPU each (started by ``ray start``, tests/cluster.py);
* per video, the cluster path's overhead: a video scored by an ``AUWorker``
  actor on the second node (scheduling, the call, the rows back through
  the object store) against the same ``AUDetector`` call in this process,
  and the size of the rows sent back.

Usage (from the repository root):
  python -m scripts.corpora_cluster BUNDLE [--videos 4] [--frames 32]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support import DATA
from tests.support.cluster import ray_environment, run_batch, start_cluster
from tests.support.synthetic import FootageMaker, Segment, write_video


def make_corpus(folder: Path, videos: int, frames: int) -> list[Path]:
    import cv2

    photo = cv2.cvtColor(cv2.imread(str(DATA / "face.jpg")), cv2.COLOR_BGR2RGB)
    maker = FootageMaker(photo, size=(320, 180))
    paths = []
    for number in range(videos):
        path = folder / f"v{number}.mp4"
        write_video(path, [f.rgb for f in maker.frames((Segment("clean", frames, speed=0.4 + 0.1 * number),))])
        paths.append(path)
    return paths


def job_seconds(corpus: Path, bundle: Path, out: Path, address: str) -> float:
    started = time.perf_counter()
    run_batch([corpus], bundle, out, address, timeout=None).check_returncode()
    return time.perf_counter() - started


OVERHEAD_SCRIPT = r"""
import json, pickle, sys, time, ray
from pathlib import Path
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from mdhr_runtime import AUDetector
from mdhr_runtime.batch.jobs import AUWorker, ProgressLog, Task

address, bundle, videos = sys.argv[1], sys.argv[2], sys.argv[3:]
ray.init(address=address, logging_level="ERROR", log_to_driver=False)
here = ray.get_runtime_context().get_node_id()
other = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != here][0]
ray.remote(ProgressLog).options(name="measure-progress", num_cpus=0).remote()
worker = ray.remote(AUWorker).options(num_cpus=1, scheduling_strategy=NodeAffinitySchedulingStrategy(other, soft=False)
                                      ).remote(bundle, "onnxruntime", 1, "measure-progress")
ray.get(worker.node.remote())
noop = []
for _ in range(20):
    t = time.perf_counter(); ray.get(worker.node.remote()); noop.append(time.perf_counter() - t)
remote, sizes = [], []
for number, video in enumerate(videos):
    t = time.perf_counter()
    reply = ray.get(worker.run.remote(Task(Path(video), None, number)))
    remote.append(time.perf_counter() - t)
    sizes.append(len(pickle.dumps(reply)))
ray.kill(worker)
local = []
with AUDetector(bundle, backend="onnxruntime", threads=1) as detector:
    detector.predict_video(videos[0])  # warm, as the actor is
    for video in videos:
        t = time.perf_counter(); detector.predict_video(video); local.append(time.perf_counter() - t)
print(json.dumps({"noop_call_s": sorted(noop)[len(noop) // 2], "remote_s": remote, "local_s": local,
                  "reply_bytes": sizes}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=32)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mdhr-measure-"))
    corpus = work / "corpus"
    corpus.mkdir()
    videos = make_corpus(corpus, args.videos, args.frames)
    frames = args.videos * args.frames
    results = {}
    for label, cpus in (("1 node x 2 CPUs", (2,)), ("2 nodes x 1 CPU", (1, 1))):
        cluster = start_cluster(cpus)
        try:
            seconds = job_seconds(corpus, args.bundle, work / f"out-{len(cpus)}", cluster.address)
            results[label] = {"seconds": round(seconds, 1), "frames_per_s": round(frames / seconds, 2)}
            if len(cpus) == 2:
                measured = subprocess.run([sys.executable, "-c", OVERHEAD_SCRIPT, cluster.address, str(args.bundle),
                                           *map(str, videos)], check=True, capture_output=True, text=True,
                                          env=ray_environment())
                overhead = json.loads(measured.stdout.strip().splitlines()[-1])
                gaps = [r - l for r, l in zip(overhead["remote_s"], overhead["local_s"])]
                results["per video"] = {
                    "noop_call_ms": round(1000 * overhead["noop_call_s"], 1),
                    "remote_s": [round(x, 2) for x in overhead["remote_s"]],
                    "local_s": [round(x, 2) for x in overhead["local_s"]],
                    "overhead_s_median": round(sorted(gaps)[len(gaps) // 2], 3),
                    "reply_kib_per_frame": round(sum(overhead["reply_bytes"]) / frames / 1024, 2)}
        finally:
            cluster.stop()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
