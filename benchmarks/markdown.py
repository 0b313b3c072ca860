"""Readable markdown of the mdhr-bench and mdhr-parity reports (the JSON
stays the source of truth)."""
from __future__ import annotations


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def number(value, digits: int = 1, suffix: str = "") -> str:
    return "–" if value is None else f"{value:,.{digits}f}{suffix}"


def percent(value, digits: int = 2) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


def machine_line(machine: dict) -> str:
    versions = machine["versions"]
    libraries = ", ".join(f"{k} {versions[k]}" for k in ("torch", "onnxruntime", "onnxruntime-gpu", "tensorrt",
                                                                     "openvino", "nncf")
                          if k in versions)
    gpu = ", ".join(machine["gpu"]) or "no GPU"
    load = machine.get("load_average_1m")
    busy = f", load average {load}" if load is not None else ""
    return (f"{machine['cpu']} ({machine['cores']} cores, {machine['threads']} threads used{busy}); "
            f"{gpu}; Python {versions['python']}, {libraries}")


def gate_cell(gate: dict | None) -> str:
    """Agreement at the AU medians / lowest rank correlation, and the verdict."""
    if gate is None:
        return "–"
    rank = "–" if gate["rank_correlation_min"] is None else f"{gate['rank_correlation_min']:.3f}"
    return (f"{percent(gate['median_decision_agreement'])} / {rank} "
            f"({'passed' if gate['passed'] else 'failed'})")


def bench_markdown(report: dict) -> str:
    bundle, settings = report["bundle"], report["settings"]
    untrained = " (untrained)" if bundle["untrained"] else ""
    parts = [f"### MDHR {bundle['dataset']}/{bundle['backbone']}{untrained}: batch {settings['batch']} "
             f"× {settings['frames']} frames",
             f"Machine: {machine_line(report['machine'])}. {settings['warmup']} warm-up and "
             f"{settings['iters']} timed runs per backend, each in its own process; latency is one call "
             "on a batch (numpy in, numpy out).", ""]
    header = ["backend", "precision", "device", "p50 ms", "p90 ms", "p99 ms", "mean ± std ms", "clips/s",
              "frames/s", "speed-up vs torch", "speed-up vs onnxruntime", "agreement vs fp32 (export gate)", "load s",
              "peak RSS MB", "GPU MB"]
    rows = []
    for r in report["results"]:
        if r.get("mode") == "stream":
            continue
        if r["status"] != "ok":
            rows.append([r["backend"], r["precision"], "–", f"skipped: {r['reason']}"] + ["–"] * (len(header) - 4))
            continue
        lat, mem = r["latency_ms"], r["memory"]
        speedup = "–" if r["speedup_vs_torch"] is None else f"{r['speedup_vs_torch']:.2f}×"
        vs_ort = "–" if r.get("speedup_vs_onnxruntime") is None else f"{r['speedup_vs_onnxruntime']:.2f}×"
        rows.append([r["backend"], r["precision"], r["device"], number(lat["p50"]), number(lat["p90"]),
                     number(lat["p99"]), f"{lat['mean']:,.1f} ± {lat['std']:,.1f}", number(r["clips_per_s"], 2),
                     number(r["frames_per_s"], 1), speedup, vs_ort, gate_cell(r.get("export_gate")),
                     number(r["load_s"], 2),
                     number(mem["peak_rss_mb"], 0), number(mem["gpu_mb"], 0)])
    parts.append(table(header, rows))
    if report.get("int8_search"):
        parts += ["", int8_frontier_markdown(report["int8_search"])]
    for r in report["results"]:
        if r.get("mode") == "stream":
            parts += ["", stream_markdown(r)]
    if report.get("video"):
        parts += ["", video_markdown(report["video"])]
    if report.get("video_centred"):
        parts += ["", video_markdown(report["video_centred"])]
    return "\n".join(parts) + "\n"


def int8_frontier_markdown(search: dict) -> str:
    """The export's INT8 candidates, speed against agreement; the shipped one in bold."""
    gate = search["gate"]
    lines = [f"#### INT8 search at export: {len(search['candidates'])} candidates (gate: {percent(gate['min_agreement'])} "
             f"at the AU medians, rank correlation {gate['min_rank_correlation']}, at >= "
             f"{gate['min_speedup_vs_onnxruntime_fp32']}× ONNX Runtime fp32): "
             + ("the shipped one passes" if search["passed"] else "none passed; the shipped one is the best found"), ""]
    rows = []
    for i, c in enumerate(search["candidates"]):
        mark = (lambda text: f"**{text}**") if i == search["chosen"] else (lambda text: text)
        rank = "–" if c["rank_correlation_min"] is None else f"{c['rank_correlation_min']:.3f}"
        rows.append([mark(", ".join(c["int8_groups"])), percent(c["int8_macs_share"], 1),
                     "not timed" if c["speedup_vs_onnxruntime"] is None else f"{c['speedup_vs_onnxruntime']:.2f}×",
                     percent(c["median_decision_agreement"]), rank,
                     percent(c["region_argmax_agreement"]), "passed" if c["passed"] else "failed"])
    return "\n".join(lines + [table(["in INT8 (the rest float32)", "share of MACs", "speed-up vs onnxruntime fp32",
                                     "decisions @median", "min rank corr", "region argmax", "gate"], rows)])


def stream_markdown(r: dict) -> str:
    lines = [f"#### Streaming ({r['backend']}, {r['precision']}, windows of {r['frames']} frames, p50 ms)", ""]
    rows = [[number(r["frame_stage_ms"]), number(r["clip_stage_ms"]), number(r["per_frame_ms"]),
             number(r["clip_recompute_ms"]), f"{r['stream_vs_recompute']:.3f}×"]]
    return "\n".join(lines + [table(["frame stage", "clip stage", "per new frame (stride 1)",
                                     "whole clip per frame", "stream vs recompute"], rows)])


def video_markdown(video: dict) -> str:
    windows = video.get("windows") or {"mode": "official"}
    mode = windows["mode"] + (f", hop {windows['hop']}" if windows["mode"] == "centred" else "")
    cost = f", {video['cost_vs_official']:.3f}× official's time per frame" if "cost_vs_official" in video else ""
    edges = video.get("edge_change") or {}
    smooth = (f"; frame-to-frame change at multiples of {windows.get('frames', 'T')} vs elsewhere "
              f"{edges['ratio']:.2f}×" if edges.get("ratio") is not None else "")
    lines = [f"#### Whole pipeline on {video['video']} ({mode} windows): {video['frames']} frames "
             f"({video['frames_with_face']} with a face), {number(video['fps'], 1)} frames/s end to end{cost}, "
             f"model on {video['backend']}{smooth}", ""]
    rows = [[name, number(stage["seconds"], 2), number(stage["ms_per_frame"], 2), percent(stage["share"], 1)]
            for name, stage in video["stages"].items()]
    return "\n".join(lines + [table(["stage", "total s", "ms per frame", "share"], rows)])


def parity_markdown(report: dict) -> str:
    ref, inputs = report["reference"], report["inputs"]
    parts = [f"### Parity against {ref['backend']} ({ref['precision']}) on {inputs['clips']} clips "
             f"({inputs['frames']} frames; {inputs['description']})", ""]
    header = ["backend", "precision", "device", "verdict", "AU max err", "AU mean err", "decisions @thr",
              "decisions @median", "region argmax", "min rank corr"]
    rows = []
    for r in report["results"]:
        if r["status"] != "ok":
            rows.append([r["backend"], r["precision"], "–", f"skipped: {r['reason']}"] + ["–"] * (len(header) - 4))
            continue
        verdict = "pass" if r["passed"] else "FAIL: " + "; ".join(r["failures"])
        rows.append([r["backend"], r["precision"], r["device"], verdict, f"{r['au_max_abs_error']:.1e}",
                     f"{r['au_mean_abs_error']:.1e}", percent(r["au_decision_agreement"]),
                     percent(r["median_decision_agreement"]), percent(r["region_argmax_agreement"]),
                     number(r["rank_correlation_min"], 4)])
    parts.append(table(header, rows))
    if report.get("ground_truth"):
        parts += ["", ground_truth_markdown(report)]
    return "\n".join(parts) + "\n"


def ground_truth_markdown(report: dict) -> str:
    truth = report["ground_truth"]
    au_names = report["bundle"]["au_names"]
    scored = [(report["reference"]["backend"], report["reference"]["ground_truth"])]
    scored += [(r["backend"], r["ground_truth"]) for r in report["results"] if r["status"] == "ok"]
    rows = [[name, *(number(100 * gt["f1_per_au"][au], 1) for au in au_names), number(100 * gt["mean_f1"], 1)]
            for name, gt in scored]
    return (f"#### F1 (%) against ground truth: {truth['labelled_frames']} labelled frames in {truth['clips']} "
            f"clips of {truth['clip_frames']} frames\n\n" + table(["backend", *au_names, "mean"], rows))
