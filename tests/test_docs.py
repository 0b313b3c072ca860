"""The README and docs/: every relative link lands on a file or a heading,
and every command's --help ends with an example and names its docs page."""
from __future__ import annotations

import ast
import io
import os
import re
import subprocess
import sys
import tokenize
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
            "mdhr-report", "mdhr-demo", "mdhr-live"]


def entry_points() -> dict[str, str]:
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.scripts]")[1].split("\n[")[0]
    return dict(re.findall(r'^(mdhr-[\w-]+) = "([\w.:]+)"', section, re.M))


def test_every_command_is_in_the_list_below():
    assert sorted(entry_points()) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_ends_with_an_example_and_names_its_docs_page(command):
    """The help's last paragraph, after the options, is the example; the
    help names the command's manual page, and --docs prints that page as
    installed with the package (a pip-installed user has no docs/ folder)."""
    module, function = entry_points()[command].split(":")
    run = [sys.executable, "-c", f"from {module} import {function} as m; m()"]
    result = subprocess.run(run + ["--help"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "100"})
    assert result.returncode == 0, result.stderr
    text = result.stdout
    pages = re.findall(r"docs/([\w-]+\.md)", text)
    assert pages and all((ROOT / "docs" / name).is_file() for name in pages), f"{command} names no docs page"
    assert f"{command} --docs prints docs/{pages[0]}" in " ".join(text.split())
    last = text.rstrip().split("\n\n")[-1].strip().splitlines()
    assert "\nOptions:" in text.split(last[0])[0], f"{command} --help: the example does not follow the options"
    assert last[0].strip() in ("Example:", "Examples:") and all(line.strip().startswith(command.split()[0]) or
                                                                line.startswith("    ") for line in last[1:]), \
        f"{command} --help does not end with an example:\n{text}"
    assert any(line.strip().startswith(command) for line in last[1:])
    manual = subprocess.run(run + ["--docs"], capture_output=True, text=True)
    assert manual.returncode == 0 and manual.stdout == (ROOT / "docs" / pages[0]).read_text(encoding="utf-8")


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


# Docs and comments state contracts and dated measurements; the history of
# the work (which issue asked, what the code did before) belongs in git.
HISTORY = re.compile(r"\bissues? #?\d+|\bbefore this change\b|\bafter this change\b|\bno longer\b|\bused to\b"
                     r"|\bpreviously\b|\bwas fixed\b|\bearlier version\b|\bwe changed\b|\buntil now\b", re.I)
CODE_FOLDERS = ("mdhr", "runtime", "export", "benchmarks", "demo", "scripts", "tests")


def comments_and_docstrings(source: str) -> list[tuple[int, str]]:
    """(line, text) of a Python module's comments and docstrings."""
    found = [(token.start[0], token.string) for token in tokenize.generate_tokens(io.StringIO(source).readline)
             if token.type == tokenize.COMMENT]
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, kinds) and (text := ast.get_docstring(node, clean=False)):
            found.append((node.body[0].lineno, text))
    return found


def history_phrases(name: str, text: str, first_line: int = 1) -> list[str]:
    return [f"{name}:{first_line + text[:m.start()].count(chr(10))}: {m.group(0)!r}" for m in HISTORY.finditer(text)]


def test_the_history_finder_sees_history():
    source = ('"""Scores clips.  Before this change it read frames."""\n'
              "x = 1  # no longer needed since issue 12\n"
              "y = 'issue 12 in a string is data, not a comment'\n")
    hits = [hit for line, text in comments_and_docstrings(source) for hit in history_phrases("m.py", text, line)]
    assert sorted(hits) == ["m.py:1: 'Before this change'", "m.py:2: 'issue 12'", "m.py:2: 'no longer'"]
    assert history_phrases("p.md", "the previous frame, the issue's bar, 20 issues") == []


def test_docs_and_comments_state_contracts_not_history():
    found = [hit for page in PAGES for hit in history_phrases(page.relative_to(ROOT).as_posix(), page.read_text())]
    modules = [p for folder in CODE_FOLDERS for p in sorted((ROOT / folder).rglob("*.py"))]
    assert len(modules) > 150
    for module in modules:
        name = module.relative_to(ROOT).as_posix()
        found += [hit for line, text in comments_and_docstrings(module.read_text(encoding="utf-8"))
                  for hit in history_phrases(name, text, line)]
    for asset in sorted((ROOT / "runtime").rglob("*.js")) + sorted((ROOT / "runtime").rglob("*.css")):
        found += history_phrases(asset.relative_to(ROOT).as_posix(), asset.read_text(encoding="utf-8"))
    assert not found, "say what holds (a contract, a dated measurement), not what changed:\n" + "\n".join(found)
