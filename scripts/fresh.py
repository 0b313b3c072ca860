"""What the timing scripts share: a snippet of Python run and timed in a
fresh process, as a user's first command meets imports, sessions and the
page cache.  Not a script itself."""
from __future__ import annotations

import os
import subprocess
import sys

# The last line a snippet prints: its seconds since ``start`` and its peak
# resident bytes (VmHWM), which ``timed`` reads back.
REPORT = ("print(time.perf_counter() - start, next(int(l.split()[1]) for l in open('/proc/self/status') "
          "if l.startswith('VmHWM:')) * 1024)\n")

# mdhr-run IMAGE --model BUNDLE --out CSV (arguments 1 to 3), timed from before its imports.
MDHR_RUN = """
import sys, time
start = time.perf_counter()
from mdhr_runtime.cli.run import main
try:
    main([sys.argv[1], "--model", sys.argv[2], "--out", sys.argv[3]])
except SystemExit as e:
    assert e.code == 0, e.code
""" + REPORT


def timed(code: str, args: list[str], python: str = sys.executable, env: dict | None = None) -> tuple[float, int]:
    """Seconds and peak resident bytes of ``code`` (ending in REPORT) run by
    ``python``, with ``env`` (default: this process's) as installed: Python's
    bytecode cache on.  pip compiles a package's modules when it installs
    it, so a user's command imports compiled code; the machines here set
    PYTHONDONTWRITEBYTECODE, which makes every import compile the source of
    an editable checkout again (about 0.15 s of the runtime's start-up)."""
    env = {key: value for key, value in (os.environ if env is None else env).items()
           if key != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, check=True, env=env)
    seconds, peak = done.stdout.split()[-2:]
    return float(seconds), int(peak)
