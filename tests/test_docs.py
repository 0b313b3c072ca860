"""The README and docs/: every relative link lands on a file or a heading,
and every command's --help ends with an example and names its docs page."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\]]|\][^(])*?\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~)")


def prose(page: Path) -> list[str]:
    """The page's lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in page.read_text().splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped
    (hyphens and underscores kept), spaces to hyphens."""
    text = re.sub(r"[`*]|<[^>]+>", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in prose(page):
        if match := re.match(r"^#{1,6}\s+(.*)$", line):
            base = slug(match.group(1))
            count = seen.get(base, 0)
            found.add(base if count == 0 else f"{base}-{count}")
            seen[base] = count + 1
    return found


def links(page: Path) -> list[str]:
    return [target for line in prose(page) for target in LINK.findall(re.sub(r"`[^`]*`", "", line))]


def test_the_link_checker_sees_links_and_anchors():
    """The checker itself, on a page it must judge (so a broken regex cannot
    pass every page by finding nothing)."""
    assert slug("Errors, outputs and exit codes") == "errors-outputs-and-exit-codes"
    assert slug("Every face: `--faces all`") == "every-face---faces-all"
    readme = ROOT / "README.md"
    assert len(links(readme)) >= 10 and any(target.startswith("docs/") for target in links(readme))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            broken.append(f"{target}: no file {destination.relative_to(ROOT) if ROOT in destination.parents else destination}")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading #{anchor} in {destination.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(ROOT / "README.md")}
    assert [page.name for page in PAGES[1:] if page.resolve() not in linked] == []


COMMANDS = ["mdhr-export", "mdhr-build", "mdhr-triton", "mdhr-run", "mdhr-batch", "mdhr-bench", "mdhr-parity",
            "mdhr-report", "mdhr-demo"]


def entry_points() -> dict[str, str]:
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.scripts]")[1].split("\n[")[0]
    return dict(re.findall(r'^(mdhr-[\w-]+) = "([\w.:]+)"', section, re.M))


def test_every_command_is_in_the_list_below():
    assert sorted(entry_points()) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_ends_with_an_example_and_names_its_docs_page(command):
    module, function = entry_points()[command].split(":")
    result = subprocess.run([sys.executable, "-c", f"from {module} import {function} as m; m()", "--help"],
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "100"})
    assert result.returncode == 0, result.stderr
    text = result.stdout
    pages = re.findall(r"docs/([\w-]+\.md)", text)
    assert pages and all((ROOT / "docs" / name).is_file() for name in pages), f"{command} names no docs page"
    # the example is the description's last paragraph: "Example:" then command lines
    description = text.split("\nOptions:")[0].rstrip()
    last = description.split("\n\n")[-1].strip().splitlines()
    assert last[0].strip() in ("Example:", "Examples:") and all(line.strip().startswith(command.split()[0]) or
                                                                line.startswith("    ") for line in last[1:]), \
        f"{command} --help does not end with an example:\n{description}"
    assert any(line.strip().startswith(command) for line in last[1:])


# A path in backquotes that starts at one of the repository's folders, e.g.
# `runtime/pipeline.py` or `tests/support/`; the mdhr_runtime/... spelling of
# a package path counts too (mapped to its folder).
TOP_FOLDERS = ("mdhr", "export", "runtime", "benchmarks", "demo", "tests", "scripts", "docs", ".ci")
PACKAGE_FOLDERS = {"mdhr_export": "export", "mdhr_runtime": "runtime", "mdhr_bench": "benchmarks", "mdhr_demo": "demo"}
QUOTED_PATH = re.compile(r"`((?:%s)/[\w./-]*)`" % "|".join(re.escape(f) for f in (*TOP_FOLDERS, *PACKAGE_FOLDERS)))


def quoted_paths(page: Path) -> list[str]:
    return QUOTED_PATH.findall(page.read_text())


def test_the_path_finder_sees_paths():
    assert QUOTED_PATH.findall("see `runtime/pipeline.py`, `mdhr_runtime/bundle.py` and `tests/support/` but "
                               "not `x/runtime/a.py` or `--out DIR/`") == \
        ["runtime/pipeline.py", "mdhr_runtime/bundle.py", "tests/support/"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_quoted_path_exists(page):
    missing = []
    for quoted in quoted_paths(page):
        top, _, rest = quoted.partition("/")
        path = ROOT / PACKAGE_FOLDERS.get(top, top) / rest
        if not path.exists():
            missing.append(quoted)
    assert missing == [], f"{page.name} quotes paths that do not exist"
