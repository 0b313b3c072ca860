"""Official against centred windows on the same footage: both timelines in
one figure, and the mean frame-to-frame change of the scores by position in
the official window (edge jumps show as a peak at position 0).

    python -m scripts.windows_figures --model bundles/bp4d --out docs/windows_timeline.png [--video clip.mp4]

Without ``--video`` the footage is the synthetic test footage made from
``tests/data/face.jpg`` (tests/support/synthetic.py).  The JSON summary goes to
stdout; with ``--stream`` it also holds mdhr-bench's stream measurement, so
one run gives all three targets of the temporal split.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mdhr_bench.stream import edge_change
from mdhr_runtime.detector import AUDetector
from mdhr_runtime.files.atomic import atomic_path

SHOWN_AUS = 3


def change_by_position(scores: np.ndarray, frames: int) -> np.ndarray:
    """Mean absolute frame-to-frame change arriving at each position of the
    official window (position 0: across a window edge)."""
    change = np.abs(np.diff(scores, axis=0)).mean(axis=1)
    positions = np.arange(1, len(scores)) % frames
    return np.array([np.nanmean(np.where(positions == p, change, np.nan)) for p in range(frames)])


def compare(model: Path, video: Path, hops: list[int]) -> tuple[dict, dict[str, np.ndarray], list[str]]:
    runs, summary = {}, {}
    with AUDetector(model, backend="onnxruntime") as detector:
        T = detector.bundle.frames
        modes = [("official", None)] + [("centred", hop) for hop in hops]
        for mode, hop in modes:
            name = mode if hop is None else f"centred hop {hop}"
            report, table = detector.profile(video, windows=mode, hop=hop)
            runs[name] = table.score_matrix()
            summary[name] = {"fps": report["fps"], "edge_change": edge_change(runs[name], T),
                             "change_by_position": [round(float(v), 6) for v in change_by_position(runs[name], T)]}
        names = detector.au_names
    official_fps = summary["official"]["fps"]
    for name in summary:
        summary[name]["cost_vs_official"] = round(official_fps / summary[name]["fps"], 3)
    return summary, runs, names


def figure(runs: dict[str, np.ndarray], au_names: list[str], frames: int, summary: dict, title: str) -> Figure:
    shown = list(runs)[:2]
    fig = Figure(figsize=(12, 2.0 * SHOWN_AUS + 2.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(SHOWN_AUS + 1, 1, squeeze=False)[:, 0]
    colours = {shown[0]: "#d95f02", shown[1]: "#1b4f72"}
    for k, ax in enumerate(axes[:SHOWN_AUS]):
        length = len(runs[shown[0]])
        for edge in range(frames, length, frames):
            ax.axvline(edge - 0.5, color="#999999", linewidth=0.5, alpha=0.6)
        for name in shown:
            ax.plot(np.arange(length), runs[name][:, k], color=colours[name], linewidth=1.0, label=name)
        ax.set_ylabel(au_names[k], rotation=0, ha="right", va="center")
        ax.tick_params(labelsize=8)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[SHOWN_AUS - 1].set_xlabel(f"frame (grey lines: official window edges, every {frames} frames)")
    ax = axes[-1]
    for name in shown:
        ratio = summary[name]["edge_change"]["ratio"]
        ax.plot(np.arange(frames), summary[name]["change_by_position"], marker="o", color=colours[name],
                label=f"{name}: change at edges / elsewhere = {ratio:.2f}x")
    ax.set_xlabel("position in the official window (0: first frame after an edge)")
    ax.set_ylabel("mean |Δscore|")
    ax.set_xticks(range(frames))
    ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    return fig


@click.command()
@click.option("--model", required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="PNG to write.")
@click.option("--video", type=click.Path(path_type=Path), help="Footage [default: synthetic, from face.jpg].")
@click.option("--hops", default="8", show_default=True, help="Centred hops to measure (comma-separated); "
              "the first is drawn.")
@click.option("--stream", is_flag=True, help="Also measure streaming cost (as mdhr-bench --stream).")
def main(model, out, video, hops, stream):
    hop_list = [int(h) for h in hops.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        if video is None:
            video = synthetic_footage(Path(tmp) / "footage.mp4")
        summary, runs, names = compare(model, video, hop_list)
    if stream:
        from mdhr_bench.machine import usable_cores
        from mdhr_bench.stream import measure_stream
        from mdhr_runtime.bundle import load_bundle

        summary["stream"] = measure_stream(load_bundle(model), usable_cores(), warmup=2, iters=10)
    frames = len(summary["official"]["change_by_position"])
    fig = figure(runs, names, frames, summary,
                 f"Official vs centred windows, same footage ({len(next(iter(runs.values())))} frames)")
    with atomic_path(out) as temporary:
        fig.savefig(temporary, format="png", dpi=100)
    click.echo(json.dumps(summary, indent=1))


def synthetic_footage(path: Path) -> Path:
    import cv2

    from tests.support.synthetic import FootageMaker, write_video

    photo = cv2.cvtColor(cv2.imread(str(Path(__file__).parents[1] / "tests" / "data" / "face.jpg")),
                         cv2.COLOR_BGR2RGB)
    write_video(path, [f.rgb for f in FootageMaker(photo).frames()])
    return path


if __name__ == "__main__":
    main()
