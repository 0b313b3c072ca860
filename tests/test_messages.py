"""A library message names the parameter it is about (``{param:hop}``); each
command turns that into its own flag or argument, so a Python caller reads
``hop`` and a command's user ``--hop``.  Checked over the source of every
library module, and end to end on a few real calls."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mdhr.errors import BackendUnavailable, BundleError, InputError, MDHRError
from mdhr_bench import cli as bench_cli
from mdhr_demo import cli as demo_cli
from mdhr_export import cli as export_cli
from mdhr_runtime.cli import batch, live_page, report, run
from mdhr_runtime.cli.common import command_flags
from mdhr_runtime.runs.video import RunOptions, run_video
from tests.support import ROOT

LIBRARY = ("mdhr", "runtime", "export", "benchmarks", "demo")
# A flag may stand in a command line the message suggests, up to the next ; : or ,
SUGGESTION = re.compile(r"(mdhr-(run|batch|report|live|export|build|triton|bench|parity|demo)|ray start|pip install)"
                        r"\b[^;:,]*")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
KINDS = {"InputError", "BundleError", "BackendUnavailable"}
# every command, with the library names its options name otherwise
COMMANDS = {
    "mdhr-run": (run.main, run.FLAGS), "mdhr-batch": (batch.main, batch.FLAGS),
    "mdhr-report": (report.main, report.FLAGS), "mdhr-live": (live_page.main, live_page.FLAGS),
    "mdhr-export": (export_cli.main, {}), "mdhr-build": (export_cli.build_main, export_cli.BUNDLE_FLAGS),
    "mdhr-triton": (export_cli.triton_main, export_cli.BUNDLE_FLAGS), "mdhr-bench": (bench_cli.bench_main, {}),
    "mdhr-parity": (bench_cli.parity_main, {}), "mdhr-demo": (demo_cli.main, {}),
}


def library_modules() -> list[Path]:
    """Every library module but the commands (which name their own flags)."""
    found = [p for folder in LIBRARY for p in sorted((ROOT / folder).rglob("*.py"))]
    return [p for p in found if "cli" not in p.relative_to(ROOT).parts and p.name != "cli.py"]


def texts(node: ast.AST) -> list[str] | None:
    """The strings an expression can make (an f-string's values as X, each
    branch of a conditional), or None when it makes none."""
    if isinstance(node, ast.Constant):
        return [node.value] if isinstance(node.value, str) else None
    if isinstance(node, ast.JoinedStr):
        made = [""]
        for part in node.values:
            pieces = texts(part.value) if isinstance(part, ast.FormattedValue) else texts(part)
            made = [m + p for m in made for p in (pieces or ["X"])]
        return made
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = texts(node.left), texts(node.right)
        if left is not None or right is not None:
            return [a + b for a in (left or ["X"]) for b in (right or ["X"])]
    if isinstance(node, ast.IfExp):
        body, orelse = texts(node.body), texts(node.orelse)
        if body is not None or orelse is not None:
            return (body or []) + (orelse or [])
    return None


def _docstrings(tree: ast.Module) -> set[int]:
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, kinds) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}


def hard_coded_flags(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string the code makes that names a flag outside
    a suggested command line; docstrings and comments are not messages."""
    tree = ast.parse(source)
    skip, found = _docstrings(tree), []

    def visit(node: ast.AST) -> None:
        made = None if id(node) in skip else texts(node)
        if made is None:
            for child in ast.iter_child_nodes(node):
                visit(child)
            return
        for text in made:
            if FLAG.search(SUGGESTION.sub("", text)):
                found.append((node.lineno, text))
                return

    visit(tree)
    return found


def test_the_scanner_tells_flags_from_suggested_commands():
    """The scanner itself, on code it must judge (so a broken pattern cannot
    pass the library by finding nothing)."""
    bad = ['raise InputError(f"--hop must be 1 to {n}")', 'check_output_folder(out, "--out")',
           'x = "pad it or export with --batch " + str(b)', 'y = f"give {\'--fp16\' if gpu else \'\'}"',
           'raise MDHRError("mdhr-batch never replaces a file: choose another --out")',
           's = "cannot run mdhr-toolkit (give --verbose)"']
    good = ['raise InputError(f"{param(\'hop\')} must be 1 to {n}")', 'z = "rebuild it: mdhr-build B --fp16"',
            'w = f"mdhr-build {root}" + (" --fp16" if fp16 else "")', '"""Docs may say --hop."""',
            'v = "start one with \'ray start --head\'"', 'u = "x - y, or 2--3"',
            't = "export it with mdhr-export ... --target gpu (or all) --fp16"']
    assert [len(hard_coded_flags(line)) for line in bad] == [1] * len(bad)
    assert [hard_coded_flags(line) for line in good] == [[]] * len(good)


def test_library_messages_name_parameters_not_flags():
    modules = library_modules()
    assert len(modules) > 100 and ROOT / "runtime" / "windows" / "streams.py" in modules
    found = [f"{path.relative_to(ROOT)}:{line}: {text[:100]!r}" for path in modules
             for line, text in hard_coded_flags(path.read_text(encoding="utf-8"))]
    assert not found, "name the parameter as {param('name')} instead:\n" + "\n".join(found)


def _raised_kind(node: ast.Raise) -> tuple[str, ast.AST] | None:
    call = node.exc
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.args:
        return call.func.id, call.args[0]
    return None


def parameter_names(source: str) -> tuple[set[str], list[tuple[int, str]]]:
    """The parameters a module's messages name (``param("x")`` and
    ``{param:x}``), and the raises that name one with a bare MDHRError."""
    names, bare = set(), []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "param" and node.args \
                and isinstance(node.args[0], ast.Constant):
            names.add(node.args[0].value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names |= set(re.findall(r"\{param:(\w+)\}", node.value))
        raised = _raised_kind(node) if isinstance(node, ast.Raise) else None
        if raised and raised[0] == "MDHRError" and "param" in ast.dump(raised[1]):
            bare.append((node.lineno, raised[0]))
    return names, bare


def test_a_message_that_names_a_parameter_raises_its_kind():
    """A problem with a parameter the caller gave is theirs to fix: an
    InputError (or BackendUnavailable, BundleError), not a bare MDHRError."""
    assert KINDS == {kind.__name__ for kind in (InputError, BundleError, BackendUnavailable)}
    bare = [f"{path.relative_to(ROOT)}:{line}" for path in library_modules()
            for line, _ in parameter_names(path.read_text(encoding="utf-8"))[1]]
    assert not bare, "raise InputError (or another kind) where a message names a parameter: " + ", ".join(bare)


def test_every_parameter_a_message_names_is_an_option_of_a_command():
    """Each name a library message uses phrases, in some command, as one of
    that command's own flags or arguments; and every command's aliases name
    its real options."""
    spelled = {}
    for name, (command, aliases) in COMMANDS.items():
        flags = command_flags(command, aliases)
        real = {f for p in command.params for f in p.opts + p.secondary_opts} | set(command_flags(command).values())
        assert set(aliases.values()) <= real, name
        spelled[name] = {parameter for parameter, flag in flags.items() if flag in real}
    used = set().union(*(parameter_names(p.read_text(encoding="utf-8"))[0] for p in library_modules()))
    assert {"hop", "out_dir", "threads_per_worker", "instances", "port", "frames", "calibrate"} <= used
    unknown = sorted(name for name in used if not any(name in names for names in spelled.values()))
    assert not unknown, f"no command has an option for these parameters: {unknown}"


def test_a_python_caller_reads_parameter_names_and_a_command_user_flags(disfa_short_bundle, face_avi, tmp_path):
    """The same refusal, through the library and through the command."""
    options = RunOptions(model=disfa_short_bundle, input=face_avi, out=tmp_path / "a.csv", windows="official", hop=3)
    with pytest.raises(InputError) as refused:
        run_video(options)
    assert str(refused.value).startswith("hop applies to centred windows only") and "--" not in str(refused.value)
    result = CliRunner().invoke(run.main, [str(face_avi), "--model", str(disfa_short_bundle), "--out",
                                           str(tmp_path / "a.csv"), "--windows", "official", "--hop", "3"])
    assert result.exit_code == 2 and "error: --hop applies to centred windows only" in result.output

    from mdhr_export.triton import write_repository

    with pytest.raises(InputError, match="^instances must be at least 1, got 0$"):
        write_repository(disfa_short_bundle, tmp_path / "repo", instances=0)
    result = CliRunner().invoke(export_cli.triton_main, [str(disfa_short_bundle), str(tmp_path / "repo"),
                                                         "--instances", "0"])
    assert result.exit_code == 2 and "error: --instances must be at least 1, got 0" in result.output
    assert not (tmp_path / "a.csv").exists() and not (tmp_path / "repo").exists()


def test_an_argument_is_named_by_its_metavar(disfa_short_bundle, tmp_path):
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "kept.txt").write_text("mine")
    from mdhr_export.triton import write_repository

    with pytest.raises(InputError, match="^repo "):
        write_repository(disfa_short_bundle, tmp_path / "repo")
    result = CliRunner().invoke(export_cli.triton_main, [str(disfa_short_bundle), str(tmp_path / "repo")])
    assert result.exit_code == 2 and "error: REPO " in result.output and "exists and is not empty" in result.output


def test_export_options_are_named_for_python_callers(tmp_path):
    from mdhr_export.pipeline import ExportOptions, validate

    with pytest.raises(InputError) as refused:
        validate(ExportOptions(out=tmp_path / "b", ckpt=None, random_init=True, frames=1))
    assert str(refused.value).startswith("frames must be 2 to") and "--frames" in refused.value.phrased()
    assert isinstance(refused.value, MDHRError)


def test_each_kind_of_problem_raises_its_kind(disfa_short_bundle, tmp_path):
    """What a caller can catch: a damaged bundle, a bad input, a backend this
    machine cannot run, each its own MDHRError."""
    from mdhr_runtime import AUDetector
    from mdhr_runtime.bundle import load_bundle
    from mdhr_runtime.sources.frames import FrameSource

    with pytest.raises(BundleError, match="no such bundle folder"):
        load_bundle(tmp_path / "none")
    with pytest.raises(InputError, match="input not found"):
        FrameSource(tmp_path / "none.mp4")
    with pytest.raises(BackendUnavailable, match="^backend tensorrt is unavailable"):
        AUDetector(disfa_short_bundle, backend="tensorrt")
    with pytest.raises(InputError, match="^unknown backend 'warp'"):
        AUDetector(disfa_short_bundle, backend="warp")
