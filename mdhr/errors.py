"""The one exception type for problems a user can fix, and its kinds."""
from __future__ import annotations

import re
from typing import Mapping

# A library message names the parameter it is about as ``{param:min_face}``:
# Python users read ``min_face``, a command's user reads its flag ``--min-face``.
_PARAMETER = re.compile(r"\{param:([A-Za-z_][A-Za-z0-9_]*)\}")


def param(name: str) -> str:
    """The placeholder for parameter ``name`` inside an MDHRError message."""
    return "{param:" + name + "}"


class MDHRError(Exception):
    """A problem with the user's input (file, option, machine), with a one-line
    message that says what was wrong and what to do.  Command-line tools print
    the message and exit non-zero; anything else is a bug."""

    def __str__(self) -> str:
        return _PARAMETER.sub(lambda m: m[1], super().__str__())

    def phrased(self, flags: Mapping[str, str] | None = None) -> str:
        """The message with each parameter named as a command-line flag:
        ``flags`` maps a parameter to its flag where it is not ``--name-with-dashes``."""
        flags = flags or {}
        return _PARAMETER.sub(lambda m: flags.get(m[1], "--" + m[1].replace("_", "-")), super().__str__())


class BundleError(MDHRError):
    """The bundle (its card or artifacts) is missing, damaged or not understood: export it again."""


class InputError(MDHRError):
    """An input, option or output path the user gave cannot be used as it is."""


class BackendUnavailable(MDHRError):
    """This machine lacks what a backend needs (a GPU, TensorRT, OpenVINO, an instruction set)."""
