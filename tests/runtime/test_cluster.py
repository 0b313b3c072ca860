"""mdhr-batch --address on a real multi-node Ray cluster started here: a
head and a second node, each its own ``ray start`` (tests/support/cluster.py), one
CPU each.  Videos spread over both nodes, a node lost mid-job, a driver
killed and run again, jobs sharing an --out, and clusters that cannot do
the job refused before any work."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mdhr_runtime import AUDetector
from mdhr_runtime.cli.common import EXIT_USER_ERROR
from tests.support.cluster import free_port, hidden, run_batch, start_batch, start_cluster
from tests.support.refusals import error_line
from tests.support.synthetic import FootageMaker, Segment, write_video

pytest.importorskip("ray")

pytestmark = pytest.mark.slow
VIDEOS = ("one", "two", "three", "four")


@pytest.fixture(scope="module")
def cluster():
    started = start_cluster((1, 1))
    try:
        yield started
    finally:
        started.stop()


def make_corpus(root: Path, photo, frames: int) -> Path:
    """Four face videos, each a little different."""
    maker = FootageMaker(photo, size=(320, 180))
    for number, name in enumerate(VIDEOS):
        write_video(root / f"{name}.mp4", [f.rgb for f in maker.frames(
            (Segment("clean", frames + 2 * number, speed=0.5 + 0.2 * number),))])
    return root


def mdhr_run_csvs(corpus: Path, bundle: Path, folder: Path) -> dict[str, bytes]:
    """mdhr-run's CSV (its library call, its defaults) of every video, as bytes."""
    with AUDetector(bundle, backend="onnxruntime", threads=1) as detector:
        return {name: detector.predict_video(corpus / f"{name}.mp4").write_csv(folder / f"{name}.csv").read_bytes()
                for name in VIDEOS}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, photo):
    return make_corpus(tmp_path_factory.mktemp("corpus"), photo, 14)


@pytest.fixture(scope="module")
def expected(corpus, disfa_short_bundle, tmp_path_factory):
    return mdhr_run_csvs(corpus, disfa_short_bundle, tmp_path_factory.mktemp("expected"))


@pytest.fixture(scope="module")
def long_corpus(tmp_path_factory, photo):
    """Videos long enough (seconds each) to stop something while one is scored."""
    return make_corpus(tmp_path_factory.mktemp("long"), photo, 100)


@pytest.fixture(scope="module")
def long_expected(long_corpus, disfa_short_bundle, tmp_path_factory):
    return mdhr_run_csvs(long_corpus, disfa_short_bundle, tmp_path_factory.mktemp("expected"))


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def assert_outputs_whole(out: Path, expected: dict, names=VIDEOS) -> None:
    """Exactly the videos' CSVs (each with its run facts, NAME.run.json) and
    the summary, each CSV mdhr-run's byte for byte, no staging or partial file."""
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted([f"{n}.csv" for n in names] + [f"{n}.run.json" for n in names] + ["summary.csv"])
    for name in names:
        assert (out / f"{name}.csv").read_bytes() == expected[name], name


def assert_clean(cluster, timeout=60) -> None:
    """No actor alive and no placement group left by the job."""
    deadline = time.monotonic() + timeout
    while True:
        actors, groups = cluster.actors_and_groups()
        if (not actors and not groups) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert (actors, groups) == ([], [])


def one_error_line(result: subprocess.CompletedProcess, words: str) -> None:
    assert result.returncode == EXIT_USER_ERROR, result.stderr[-2000:]
    error_line(result.stderr, words, alone=True)


def test_a_corpus_over_two_nodes_equals_mdhr_run(cluster, corpus, disfa_short_bundle, expected, tmp_path):
    out = tmp_path / "out"
    result = run_batch([corpus], disfa_short_bundle, out, cluster.address)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_rows(out / "summary.csv")
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert len({r["node"] for r in rows}) == 2 and all(len(r["node"]) == 56 for r in rows)  # both nodes' ids
    assert [r["retries"] for r in rows] == ["0"] * 4
    assert_outputs_whole(out, expected)
    assert_clean(cluster)


def test_a_driver_killed_mid_job_resumes_on_the_cluster(cluster, long_corpus, disfa_short_bundle, long_expected,
                                                        tmp_path):
    out = tmp_path / "out"
    job = start_batch([long_corpus], disfa_short_bundle, out, cluster.address, "--workers", 1)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and job.poll() is None and not (
                (out / "summary.csv").is_file() and any(r["status"] == "ok" for r in read_rows(out / "summary.csv"))):
            time.sleep(0.2)
        assert job.poll() is None, job.stderr.read()[-2000:]
        job.kill()
        job.wait(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    done = [r["path"] for r in read_rows(out / "summary.csv") if r["status"] == "ok"]
    assert 1 <= len(done) < 4
    result = run_batch([long_corpus], disfa_short_bundle, out, cluster.address, "--workers", 1)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_rows(out / "summary.csv")
    assert sorted(r["path"] for r in rows) == sorted(str(long_corpus / f"{n}.mp4") for n in VIDEOS)
    assert {r["path"]: r["status"] for r in rows} == {
        str(long_corpus / f"{n}.mp4"): "skipped" if str(long_corpus / f"{n}.mp4") in done else "ok" for n in VIDEOS}
    assert_outputs_whole(out, long_expected)
    assert_clean(cluster)


def test_jobs_sharing_an_out_keep_every_row(cluster, corpus, disfa_short_bundle, expected, tmp_path):
    """Two jobs started together on disjoint videos, one worker each."""
    out = tmp_path / "out"
    halves = ([corpus / "one.mp4", corpus / "three.mp4"], [corpus / "two.mp4", corpus / "four.mp4"])
    jobs = [start_batch(half, disfa_short_bundle, out, cluster.address, "--workers", 1)
            for half in halves]
    try:
        for job in jobs:
            _, stderr = job.communicate(timeout=900)
            assert job.returncode == 0, stderr[-2000:]
    finally:
        for job in jobs:
            if job.poll() is None:
                job.kill()
    rows = read_rows(out / "summary.csv")
    assert sorted(r["path"] for r in rows) == sorted(str(corpus / f"{n}.mp4") for n in VIDEOS)
    assert all(r["status"] == "ok" for r in rows)
    assert_outputs_whole(out, expected)
    assert_clean(cluster)


def test_more_threads_than_any_node_has_refused(cluster, corpus, disfa_short_bundle, tmp_path):
    """Two CPUs in all, but one a node: a 2-thread worker fits nowhere."""
    out = tmp_path / "out"
    result = run_batch([corpus], disfa_short_bundle, out, cluster.address, "--threads-per-worker", 2)
    one_error_line(result, "--threads-per-worker 2 needs 2 CPUs on one node")
    assert not out.exists()


def test_an_address_with_nothing_there_refused(corpus, disfa_short_bundle, tmp_path):
    out = tmp_path / "out"
    started = time.monotonic()
    result = run_batch([corpus], disfa_short_bundle, out, f"127.0.0.1:{free_port()}", timeout=120)
    one_error_line(result, "nothing answers there")
    assert time.monotonic() - started < 60 and not out.exists()


def test_a_node_lost_mid_job(long_corpus, disfa_short_bundle, long_expected, tmp_path):
    """The second node's raylet killed while it scores a video: that video
    is scored again on the head, every CSV is whole and mdhr-run's, and the
    summary says which video was retried and where it was scored."""
    cluster = start_cluster((1, 1))
    try:
        out = tmp_path / "out"
        job = start_batch([long_corpus], disfa_short_bundle, out, cluster.address)
        try:
            second = cluster.nodes[1]
            deadline = time.monotonic() + 600
            while not second.busy_workers("AUWorker.run") and job.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert job.poll() is None, job.stderr.read()[-2000:]
            time.sleep(0.2)  # into its video (the tiny bundle scores these in seconds)
            os.kill(second.raylet(), signal.SIGKILL)
            _, stderr = job.communicate(timeout=900)
        finally:
            if job.poll() is None:
                job.kill()
        assert job.returncode == 0, stderr[-3000:]
        rows = read_rows(out / "summary.csv")
        assert [r["status"] for r in rows] == ["ok"] * 4
        retried = [r for r in rows if r["retries"] != "0"]
        assert [r["retries"] for r in retried] == ["1"], (rows, stderr[-3000:])
        assert retried[0]["node"] == cluster.head_node_id()  # scored (in full) on the surviving node
        assert_outputs_whole(out, long_expected)
        assert_clean(cluster)
    finally:
        cluster.stop()


@pytest.mark.parametrize("missing", ["toolkit", "bundle"])
def test_a_node_without_the_toolkit_or_the_bundle_refused(missing, corpus, disfa_short_bundle, tmp_path):
    """The second node runs where a folder is not mounted (an empty tmpfs in
    its own mount namespace): the toolkit's code, or the shared storage with
    the bundle.  One line naming the node, before any model loads."""
    import shutil

    import mdhr_runtime

    shared = tmp_path / "shared"
    shutil.copytree(disfa_short_bundle, shared / "bundle")
    folder = Path(mdhr_runtime.__file__).parent if missing == "toolkit" else shared
    wrapper = hidden(folder)
    if wrapper is None:
        pytest.skip("needs a private mount namespace (unshare -m) to hide a folder from one node")
    cluster = start_cluster((1, 1), wrappers={1: wrapper})
    try:
        out = tmp_path / "out"
        result = run_batch([corpus], shared / "bundle", out, cluster.address)
        one_error_line(result, "cannot run mdhr-toolkit" if missing == "toolkit" else "does not see the bundle")
        assert not out.exists()
        assert_clean(cluster)
    finally:
        cluster.stop()
