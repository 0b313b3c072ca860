"""The run's facts travel with its CSV: mdhr-run writes NAME.run.json beside
NAME.csv, a later mdhr-report reads them without being told again, and run
facts read back are untrusted data (checked field by field, bounded)."""
from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdhr.errors import MDHRError
from mdhr_runtime.cli.report import main as report_main
from mdhr_runtime.cli.run import main as run_main
from mdhr_runtime.results.provenance import (
    FORMAT,
    MAX_FACTS_BYTES,
    Provenance,
    facts_beside,
    file_digest,
    read_facts,
    write_facts_beside,
)
from mdhr_runtime.results.readback import read_csv
from mdhr_runtime.results.report import report_html

CSV = "frame,timestamp,success,confidence,face_x,face_y,face_w,face_h,AU01_score,AU01_c\n1,0.0,0,0,,,,,,\n"


def invoke(main, args, expect=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == expect, result.output
    return result


def provenance_rows(page: str) -> dict[str, str]:
    """The report's "What made these results" table: name -> first run's cell, as text."""
    table = page[page.index('<table class="provenance">'):]
    rows = re.findall(r"<tr><th>([^<]*)</th><td>(.*?)</td>", table[:table.index("</table>")])
    return {name: re.sub(r"<[^>]+>", "", cell) for name, cell in rows}


def test_mdhr_report_of_a_csv_states_what_made_it_without_being_told(face_avi, disfa_short_bundle, tmp_path):
    out = tmp_path / "face.csv"
    invoke(run_main, [face_avi, "--model", disfa_short_bundle, "--out", out, "--threshold", "0.3"])
    facts = read_facts(out)
    assert facts.untrained is True and facts.windows == {"mode": "centred", "frames": 4, "hop": 1,
                                                         "latency_frames": 1}
    invoke(report_main, [out, "--html", tmp_path / "r.html"])
    page = (tmp_path / "r.html").read_text()
    assert 'id="untrained"' in page
    rows = provenance_rows(page)
    assert rows["bundle"] == str(disfa_short_bundle) and rows["dataset"] == "DISFA"
    assert rows["backend"] == facts.backend and facts.backend.startswith("onnxruntime")
    assert rows["precision"] == "fp32" and rows["threshold"] == "0.3"
    assert rows["window mode"] == "mode centred, frames 4, hop 1, latency frames 1"
    assert rows["untrained model"] == "YES: outputs meaningless"
    # The same report from the JSON's metadata: one record, the same facts.
    invoke(run_main, [face_avi, "--model", disfa_short_bundle, "--out", tmp_path / "b.csv", "--json",
                      tmp_path / "b.json", "--threshold", "0.3"])
    metadata = json.loads((tmp_path / "b.json").read_text())["metadata"]
    assert {k: v for k, v in metadata.items() if k != "scoring_fps"} == \
           {k: v for k, v in facts.facts().items() if k != "scoring_fps"}
    # A CSV written again without its facts keeps none (they describe the old one).
    out.write_bytes(out.read_bytes().replace(b"\n", b"\r\n"))  # the same rows, other bytes
    invoke(report_main, [out, "--html", tmp_path / "s.html"])
    page = (tmp_path / "s.html").read_text()
    assert 'id="untrained"' not in page and provenance_rows(page)["backend"] == "not recorded"


def test_facts_are_written_and_read_back_field_for_field(tmp_path):
    csv_path = tmp_path / "v.csv"
    csv_path.write_text(CSV)
    facts = Provenance(input="v.mp4", bundle="b", dataset="BP4D", backbone="resnet", untrained=False,
                       backend="int8", precision="int8", windows={"mode": "official", "frames": 16, "hop": 16,
                                                                  "latency_frames": 15},
                       faces="all", min_face=40, threshold=0.5, video_fps=30.0, scoring_fps=9.5)
    assert write_facts_beside(csv_path, facts) == tmp_path / "v.run.json" == facts_beside(csv_path)
    assert read_facts(csv_path) == facts
    page = report_html(read_csv(csv_path),
                       tmp_path / "r.html", facts)[0]
    assert provenance_rows(page)["window mode"] == "mode official, frames 16, hop 16, latency frames 15"


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=3), max_leaves=8)
FIELDS = ["input", "bundle", "dataset", "backbone", "untrained", "backend", "precision", "windows", "faces",
          "min_face", "threshold", "video_fps", "scoring_fps", "format", "csv_sha256", "other"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=8) | JSON_VALUES,
       tag=st.booleans())
def test_any_facts_file_is_data_a_record_or_one_line(tmp_path, document, tag):
    """Any JSON beside a CSV (tagged with the CSV's digest and format or not)
    gives a Provenance whose fields have their types, None, or MDHRError."""
    csv_path = tmp_path / "v.csv"
    csv_path.write_text(CSV)
    if tag and isinstance(document, dict):
        document = {**document, "format": FORMAT, "csv_sha256": file_digest(csv_path)}
    facts_beside(csv_path).write_text(json.dumps(document))
    try:
        facts = read_facts(csv_path)
    except MDHRError as error:
        assert "\n" not in str(error) and "run facts" in str(error)
        return
    if facts is not None:
        for name, value in facts.facts().items():
            assert isinstance(value, {"untrained": bool, "windows": dict, "min_face": int, "threshold": float,
                                      "video_fps": float, "scoring_fps": float}.get(name, str)), name


@pytest.mark.parametrize("content", [b"\xff\xfe", b"[" * 100_000, b" " * (MAX_FACTS_BYTES + 1), b"{}"])
def test_damaged_or_huge_facts_are_refused_in_one_line(tmp_path, content):
    csv_path = tmp_path / "v.csv"
    csv_path.write_text(CSV)
    facts_beside(csv_path).write_bytes(content)
    with pytest.raises(MDHRError, match="is not the run facts"):
        read_facts(csv_path)


def test_a_batch_index_states_the_real_window_mode(tmp_path):
    from mdhr_runtime.results.index import index_html
    from mdhr_runtime.windows.streams import WindowPlan

    page = index_html([], Provenance(dataset="DISFA", windows=WindowPlan.make("centred", 4).describe()))
    assert "windows centred, 4 frames, hop 1" in page and "official" not in page


def test_only_run_facts_count_as_replaceable(tmp_path):
    """mdhr-batch replaces a run facts file, never a user's file, link or
    folder at that name (is_facts_file)."""
    from mdhr_runtime.results.provenance import is_facts_file

    csv_path = tmp_path / "v.csv"
    csv_path.write_text(CSV)
    ours = write_facts_beside(csv_path, Provenance(dataset="DISFA"))
    assert is_facts_file(ours)
    (tmp_path / "user.run.json").write_text('{"mine": true}\n')
    (tmp_path / "link.run.json").symlink_to(ours)
    (tmp_path / "folder.run.json").mkdir()
    (tmp_path / "text.run.json").write_text("notes\n")
    for name in ("user", "link", "folder", "text", "absent"):
        assert not is_facts_file(tmp_path / f"{name}.run.json"), name
