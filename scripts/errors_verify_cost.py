"""What verifying a bundle's files costs against ``mdhr-run`` on one image
(docs/errors.md, "What a bundle and a checkpoint are trusted with").

    python -m scripts.errors_verify_cost BUNDLE IMAGE [--repeats 3]

Each measure runs in a fresh process, interleaved, after one warm-up of the
file cache:

* ``run cold`` / ``run warm``: the whole ``mdhr-run IMAGE`` (centred windows,
  the default), with an empty verified-once record (every file the run
  opens is hashed) or with the record the previous run left;
* ``verify cold`` / ``verify warm``: the verification alone, as the run does
  it: the card read, the frame and clip stage graphs and the weights file
  they read checked against the card.

Print the machine's load beside the figures: only ratios within one run mean much.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from scripts.fresh import MDHR_RUN, REPORT, timed

VERIFY = """
import sys, time
from mdhr_runtime.bundle import load_bundle
start = time.perf_counter()
bundle = load_bundle(sys.argv[1])
for kind in ("frame_stage", "clip_stage"):
    bundle.verified(kind)
""" + REPORT


def seconds(code: str, args: list[str], records: Path) -> float:
    return timed(code, args, env={**os.environ, "MDHR_VERIFIED_CACHE": str(records)})[0]


def measure(bundle: Path, image: Path, repeats: int) -> dict:
    times: dict[str, list[float]] = {key: [] for key in ("run cold", "run warm", "verify cold", "verify warm")}
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "out.csv")
        seconds(MDHR_RUN, [str(image), str(bundle), out], Path(folder) / "warm-up")
        for index in range(repeats):
            cold = Path(folder) / f"cold-{index}"
            times["run cold"].append(seconds(MDHR_RUN, [str(image), str(bundle), out], cold))
            times["run warm"].append(seconds(MDHR_RUN, [str(image), str(bundle), out], cold))
            times["verify cold"].append(seconds(VERIFY, [str(bundle)], Path(folder) / f"v-{index}"))
            times["verify warm"].append(seconds(VERIFY, [str(bundle)], Path(folder) / f"v-{index}"))
    medians = {key: round(statistics.median(values), 3) for key, values in times.items()}
    return {"medians_s": medians, "all_s": times,
            "cold_share_of_run": round(medians["verify cold"] / medians["run cold"], 4),
            "warm_share_of_run": round(medians["verify warm"] / medians["run warm"], 4),
            "load_average": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("image", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    print(json.dumps(measure(options.bundle, options.image, options.repeats), indent=2))


if __name__ == "__main__":
    main()
