"""The one exception type for problems a user can fix."""


class MDHRError(Exception):
    """A problem with the user's input (file, option, machine), with a one-line
    message that says what was wrong and what to do.  Command-line tools print
    the message and exit non-zero; anything else is a bug."""
