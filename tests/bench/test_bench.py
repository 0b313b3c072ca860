"""mdhr-bench and mdhr-parity on the small real bundle: both tools run,
their JSON follows the schema, tolerances decide the exit status, and F1
against ground truth agrees with an independent computation.  Timings are
never asserted (the CPU is shared)."""
import json
import os
import shutil

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from mdhr_bench import metrics
from mdhr_bench.backends import NO_CHECKPOINT
from mdhr_bench.cli import EXIT_PARITY_FAILED, bench_main, parity_main
from mdhr_bench.labelled import build_clips
from tests.support.synthetic import PHOTO_FACE_BOX, FootageMaker, Segment, write_video

FACE = "tests/data/face.jpg"
BENCH_ROW_KEYS = {"mode", "backend", "precision", "device", "batch", "frames", "status", "reason", "load_s",
                  "first_inference_ms", "latency_ms", "clips_per_s", "frames_per_s", "speedup_vs_torch",
                  "speedup_vs_onnxruntime", "export_gate", "memory", "warmup", "iters"}
LATENCY_KEYS = {"p50", "p90", "p99", "mean", "std"}


def invoke(command, args):
    result = CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)
    return result


def photo_rgb():
    return cv2.cvtColor(cv2.imread(FACE), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def seed0_checkpoint(tmp_path_factory):
    """The weights of the ``disfa_model_bundle`` fixture: mdhr-export
    --random-init seeds torch with 0 before building the model."""
    import torch

    import mdhr

    torch.manual_seed(0)
    model = mdhr.build_model("DISFA", "resnet")
    path = tmp_path_factory.mktemp("ckpt") / "disfa_seed0.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def face_video(tmp_path_factory):
    """Eight frames of a slowly moving face (two 4-frame clips)."""
    frames = [f.rgb for f in FootageMaker(photo_rgb(), size=(320, 240)).frames([Segment("clean", 8, speed=0.5)])]
    path = tmp_path_factory.mktemp("video") / "face.mp4"
    write_video(path, frames)
    return path


# ---------------------------------------------------------------- mdhr-bench


def test_bench_times_backends_and_reports_skips(disfa_model_bundle, seed0_checkpoint, tmp_path):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    result = invoke(bench_main, ["--model", disfa_model_bundle, "--ckpt", seed0_checkpoint,
                                 "--backends", "torch,onnxruntime,onnxruntime-fp16,tensorrt",
                                 "--warmup", 1, "--iters", 2, "--threads", 2,
                                 "--json", out_json, "--markdown", out_md])
    assert result.exit_code == 0, result.output
    report = json.loads(out_json.read_text())
    assert {"cpu", "cores", "threads", "gpu", "versions"} <= set(report["machine"])
    assert report["machine"]["threads"] == 2 and "onnxruntime" in report["machine"]["versions"]
    assert report["settings"]["batch"] == 1 and report["settings"]["frames"] == 4
    rows = {r["backend"]: r for r in report["results"]}
    assert list(rows) == ["torch", "onnxruntime", "onnxruntime-fp16", "tensorrt"]
    for row in rows.values():
        assert set(row) == BENCH_ROW_KEYS and (row["batch"], row["frames"]) == (1, 4)
    for name in ("torch", "onnxruntime"):
        row = rows[name]
        assert row["status"] == "ok" and row["reason"] is None and row["precision"] == "fp32"
        assert row["device"] == "cpu" and row["iters"] == 2
        latency = row["latency_ms"]
        assert set(latency) == LATENCY_KEYS and 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
        assert row["clips_per_s"] > 0
        assert row["frames_per_s"] == pytest.approx(4 * row["clips_per_s"], rel=1e-3, abs=1e-3)
        assert row["load_s"] > 0 and row["memory"]["peak_rss_mb"] > row["memory"]["rss_before_load_mb"] > 0
    assert rows["torch"]["speedup_vs_torch"] == 1.0 and rows["onnxruntime"]["speedup_vs_torch"] > 0
    # this bundle was exported without --fp16 and has no engine
    assert rows["onnxruntime-fp16"]["status"] == "skipped" and "FP16 ONNX" in rows["onnxruntime-fp16"]["reason"]
    assert rows["tensorrt"]["status"] == "skipped" and rows["tensorrt"]["reason"]
    assert rows["tensorrt"]["latency_ms"] is None and rows["tensorrt"]["speedup_vs_torch"] is None
    markdown = out_md.read_text()
    assert markdown in result.output
    assert "| backend | precision |" in markdown and "skipped: " in markdown
    assert all(f"| {name} |" in markdown for name in rows)


def test_bench_without_checkpoint_skips_torch_and_times_the_video_pipeline(disfa_short_bundle, face_video, tmp_path):
    out_json = tmp_path / "bench.json"
    result = invoke(bench_main, ["--model", disfa_short_bundle, "--backends", "torch,tensorrt",
                                 "--video", face_video, "--json", out_json])
    assert result.exit_code == 0, result.output
    report = json.loads(out_json.read_text())
    assert [r["reason"] for r in report["results"]][0] == NO_CHECKPOINT
    assert all(r["status"] == "skipped" for r in report["results"])
    video = report["video"]
    assert video["frames"] == 8 and 0 < video["frames_with_face"] <= 8 and video["fps"] > 0
    assert set(video["stages"]) == {"decode", "detect", "preprocess", "model", "quality"}
    assert all(stage["seconds"] >= 0 and stage["ms_per_frame"] >= 0 for stage in video["stages"].values())
    assert video["stages"]["model"]["seconds"] > 0
    assert "Whole pipeline" in result.output and "| detect |" in result.output
    assert video["windows"]["mode"] == "official"
    assert set(video["edge_change"]) == {"at_multiples", "elsewhere", "ratio"}
    centred = report["video_centred"]
    assert centred["windows"] == {"mode": "centred", "frames": 4, "hop": 1, "latency_frames": 1}
    assert centred["frames"] == 8 and centred["fps"] > 0 and centred["cost_vs_official"] > 0
    assert "(centred, hop 1 windows)" in result.output


def test_bench_stream_measurement(disfa_short_bundle, tmp_path):
    out_json = tmp_path / "bench.json"
    result = invoke(bench_main, ["--model", disfa_short_bundle, "--backends", "tensorrt", "--stream",
                                 "--warmup", 1, "--iters", 3, "--threads", 2, "--json", out_json])
    assert result.exit_code == 0, result.output
    (stream,) = [r for r in json.loads(out_json.read_text())["results"] if r["mode"] == "stream"]
    for key in ("frame_stage_ms", "clip_stage_ms", "per_frame_ms", "clip_recompute_ms"):
        assert stream[key] > 0
    assert stream["stream_vs_recompute"] == pytest.approx(stream["per_frame_ms"] / stream["clip_recompute_ms"],
                                                          rel=1e-3)
    assert stream["cached_bytes_per_frame"] == 514_304 and stream["frames"] == 4
    assert "stream vs recompute" in result.output


def test_bench_refuses_unknown_backend_in_one_line(disfa_short_bundle):
    result = CliRunner().invoke(bench_main, ["--model", str(disfa_short_bundle), "--backends", "torch,warp"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert "unknown backend warp" in result.output


# --------------------------------------------------------------- mdhr-parity


def test_parity_against_pytorch_and_tolerance_exit(disfa_model_bundle, seed0_checkpoint, tmp_path):
    out_json = tmp_path / "parity.json"
    # An impossible float32 tolerance: ONNX Runtime must be reported as
    # breaking it, and the exit status must say so.
    result = invoke(parity_main, ["--model", disfa_model_bundle, "--ckpt", seed0_checkpoint,
                                  "--backends", "onnxruntime,torch-bf16,tensorrt", "--fp32-tolerance", 1e-12,
                                  "--min-agreement", 0.0, "--json", out_json])
    assert result.exit_code == EXIT_PARITY_FAILED, result.output
    report = json.loads(out_json.read_text())
    assert report["reference"]["backend"] == "torch" and report["reference"]["precision"] == "fp32"
    assert report["checkpoint"]["matches_bundle"] is None  # an untrained bundle records no checkpoint
    assert report["inputs"]["clips"] == 3 and report["inputs"]["frames"] == 12  # export's parity clips
    assert report["passed"] is False and report["ground_truth"] is None
    rows = {r["backend"]: r for r in report["results"]}
    ort_row = rows["onnxruntime"]
    assert ort_row["status"] == "ok" and ort_row["passed"] is False
    assert ort_row["failures"] and "AU score error" in ort_row["failures"][0]
    assert 0 < ort_row["au_max_abs_error"] <= 1e-4  # faithful all the same, at the default tolerance
    assert ort_row["au_decision_agreement"] == 1.0 and ort_row["region_argmax_agreement"] == 1.0
    assert ort_row["median_decision_agreement"] == 1.0 and ort_row["rank_correlation_min"] > 0.999
    au_names = report["bundle"]["au_names"]
    assert list(ort_row["median_decision_agreement_per_au"]) == au_names
    assert set(ort_row["regions"]) == {"up", "mid", "down"}
    # untrained: every score below 0.5, so F1 against the reference is undefined
    assert ort_row["f1_vs_reference_per_au"] == dict.fromkeys(au_names)
    bf16 = rows["torch-bf16"]
    if bf16["status"] == "ok":  # CPUs with native bfloat16
        assert bf16["passed"] is True and bf16["au_max_abs_error"] > ort_row["au_max_abs_error"]
    else:
        assert "bfloat16" in bf16["reason"]
    assert rows["tensorrt"]["status"] == "skipped" and rows["tensorrt"]["passed"] is None
    assert "FAIL: AU score error" in result.output


def face_crop_variants(count, seed):
    """Aligned-looking 256x256 face crops of the test photo: shifted,
    scaled, brightened and mirrored a little, like frames of a video."""
    rng = np.random.default_rng(seed)
    photo = photo_rgb()
    x, y, w, h = PHOTO_FACE_BOX
    crops = []
    for _ in range(count):
        side = max(w, h) * rng.uniform(1.1, 1.3)
        cx, cy = x + w / 2 + rng.uniform(-8, 8), y + h / 2 + rng.uniform(-8, 8)
        matrix = np.array([[256 / side, 0, 128 - cx * 256 / side], [0, 256 / side, 128 - cy * 256 / side]])
        crop = cv2.warpAffine(photo, matrix, (256, 256), borderMode=cv2.BORDER_REFLECT)
        crop = np.clip(crop * rng.uniform(0.7, 1.3), 0, 255).astype(np.uint8)
        crops.append(crop[:, ::-1] if rng.random() < 0.3 else crop)
    return crops


@pytest.fixture(scope="module")
def labelled_set(tmp_path_factory):
    """A DISFA-style labelled set in the official layout: two subjects of 6
    and 5 frames (so 4-frame clips need padding at both ends), some frames
    unlabelled (-1)."""
    root = tmp_path_factory.mktemp("disfa_set")
    rng = np.random.default_rng(1)
    paths = []
    for subject, count in (("SN001", 6), ("SN002", 5)):
        (root / "img_o" / subject).mkdir(parents=True)
        for i, crop in enumerate(face_crop_variants(count, seed=len(paths))):
            paths.append(f"{subject}/{subject}_{i}.png")
            cv2.imwrite(str(root / "img_o" / paths[-1]), cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2BGR))
    labels = rng.integers(0, 2, size=(len(paths), 8))
    labels[3] = -1  # an unlabelled frame
    labels[7, 2] = -1
    (root / "DISFA_test_path_fold1.txt").write_text("".join(p + "\n" for p in paths))
    np.savetxt(root / "DISFA_test_label_fold1.txt", labels, fmt="%d")
    return root, paths, labels


def independent_clips(root, paths, labels):
    """The official clips for this set, written out by hand: T=4, a subject
    change closes a clip, short clips repeat their last image with -1 labels."""
    def image(path):
        rgb = cv2.cvtColor(cv2.imread(str(root / "img_o" / path)), cv2.COLOR_BGR2RGB)
        small = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
        return ((small - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1).astype(np.float32)

    layout = [[0, 1, 2, 3], [4, 5, 5, 5], [6, 7, 8, 9], [10, 10, 10, 10]]
    real = [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    clips = np.stack([np.stack([image(paths[i]) for i in clip]) for clip in layout])
    clip_labels = np.stack([[labels[i] if is_real else -np.ones(8) for i, is_real in zip(clip, reals)]
                            for clip, reals in zip(layout, real)])
    return clips, clip_labels


def independent_f1(scores, labels, threshold):
    """Per-AU F1 by counting, frame by frame (0 when there is no true positive)."""
    scores, labels = scores.reshape(-1, scores.shape[-1]), labels.reshape(-1, labels.shape[-1])
    f1 = []
    for au in range(scores.shape[1]):
        tp = fp = fn = 0
        for score, label in zip(scores[:, au], labels[:, au]):
            if label not in (0, 1):
                continue
            active = score >= threshold
            tp += active and label == 1
            fp += active and label == 0
            fn += (not active) and label == 1
        f1.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return f1


def threshold_in_a_gap(scores):
    """A decision threshold near the median score, far from every score, so
    that fp32-level differences between backends cannot flip a decision
    (an untrained model scores everything below the card's 0.5)."""
    values = np.unique(scores.ravel())
    gaps = np.diff(values)
    candidates = np.flatnonzero(gaps > 1e-4)
    best = candidates[np.argmin(np.abs(candidates - len(values) // 2))]
    return float((values[best] + values[best + 1]) / 2)


def test_parity_on_video_and_labelled_set_with_ground_truth_f1(disfa_model_bundle, seed0_checkpoint, face_video,
                                                               labelled_set, tmp_path):
    root, paths, labels = labelled_set
    clips, clip_labels = independent_clips(root, paths, labels)
    session = ort.InferenceSession(str(disfa_model_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    scores = np.concatenate([session.run(["au_scores"], {"clips": clip[None]})[0] for clip in clips])
    threshold = threshold_in_a_gap(scores)
    # the same model with a card threshold that splits this set's scores
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    os.link(disfa_model_bundle / "model.onnx", bundle / "model.onnx")  # a bundle holds its files: no symlinks
    shutil.copy(disfa_model_bundle / "weights.bin", bundle)  # what model.onnx reads: a copy, neither link kind
    card = json.loads((disfa_model_bundle / "mdhr.json").read_text())
    card["threshold"] = threshold
    (bundle / "mdhr.json").write_text(json.dumps(card))

    out_json = tmp_path / "parity.json"
    result = invoke(parity_main, ["--model", bundle, "--ckpt", seed0_checkpoint, "--backends", "onnxruntime",
                                  "--video", face_video, "--image-list", root / "DISFA_test_path_fold1.txt",
                                  "--label-list", root / "DISFA_test_label_fold1.txt", "--json", out_json])
    assert result.exit_code == 0, result.output
    report = json.loads(out_json.read_text())
    assert report["passed"] is True
    assert report["inputs"]["clips"] == 2 + 4  # the video's two clips, then the labelled set's four
    assert "face clips of" in report["inputs"]["description"]
    truth = report["ground_truth"]
    assert truth["clips"] == 4 and truth["clip_frames"] == 4 and "16" in truth["clip_construction"]
    assert truth["labelled_frames"] == 10  # of 11 real frames: padding and frame 3 (all -1) do not count
    expected = independent_f1(scores, clip_labels, threshold)
    au_names = report["bundle"]["au_names"]
    ort_row = report["results"][0]
    assert ort_row["backend"] == "onnxruntime" and ort_row["passed"] is True
    assert [ort_row["ground_truth"]["f1_per_au"][au] for au in au_names] == pytest.approx(expected, abs=1e-9)
    assert ort_row["ground_truth"]["mean_f1"] == pytest.approx(np.mean(expected), abs=1e-9)
    reference = report["reference"]["ground_truth"]
    assert [reference["f1_per_au"][au] for au in au_names] == pytest.approx(expected, abs=1e-9)
    assert any(0 < f < 1 for f in expected), "the threshold should give a non-trivial F1"
    # a threshold with decisions on both sides: F1 against the reference is defined and perfect
    assert all(v in (None, 1.0) for v in ort_row["f1_vs_reference_per_au"].values())
    assert "F1 (%) against ground truth" in result.output


# ------------------------------------------------------------- the pieces


def test_official_clip_construction():
    disfa = ["SN001/SN001_0.png", "SN001/SN001_1.png", "SN001/SN001_2.png", "SN002/SN002_0.png"]
    clips = build_clips(disfa, np.zeros((4, 8)), "DISFA", length=2)
    assert [c.paths for c in clips] == [tuple(disfa[0:2]), (disfa[2], disfa[2]), (disfa[3], disfa[3])]
    assert (clips[1].labels[1] == -1).all() and (clips[1].labels[0] == 0).all()
    # BP4D: a new task or a gap in frame numbers starts another video
    bp4d = ["F001/T1/10.jpg", "F001/T1/11.jpg", "F001/T1/13.jpg", "F001/T2/14.jpg", "F001/T2/15.jpg"]
    clips = build_clips(bp4d, np.ones((5, 12)), "BP4D", length=3)
    assert [len(set(c.paths)) for c in clips] == [2, 1, 2]
    assert [int((c.labels[:, 0] == -1).sum()) for c in clips] == [1, 2, 1]


def test_metrics_against_plain_formulas():
    rng = np.random.default_rng(0)
    reference = rng.random((2, 5, 3))
    candidate = reference + rng.normal(0, 0.05, reference.shape)
    ranks = [np.argsort(np.argsort(x, axis=0), axis=0) for x in (reference.reshape(-1, 3), candidate.reshape(-1, 3))]
    spearman = [np.corrcoef(ranks[0][:, j], ranks[1][:, j])[0, 1] for j in range(3)]
    assert metrics.rank_correlation(reference, candidate) == pytest.approx(spearman)
    assert metrics.rank_correlation(np.zeros((4, 1)), candidate[:1, :4, :1]) == [None]
    ties = metrics.average_ranks(np.array([[3.0], [1.0], [3.0], [2.0]]))
    assert ties[:, 0].tolist() == [2.5, 0.0, 2.5, 1.0]
    flipped = reference.copy()
    flipped[0, 0, 0] = 1 - flipped[0, 0, 0]
    agreement = metrics.median_decision_agreement(reference, flipped)
    assert agreement[1:].tolist() == [1.0, 1.0] and agreement[0] in (0.9, 1.0)
    assert metrics.f1_against_reference(reference * 0, reference * 0, 0.5, ["a", "b", "c"]) == dict.fromkeys("abc")
