"""Errors a user can fix.

Every error raised for bad input is a :class:`CTRError` whose message is one paragraph: what is
wrong, where, and what to do. The command-line scripts print that paragraph (no traceback) and exit
with status 2; the Python API lets it propagate like any exception.
"""


class CTRError(Exception):
    """Bad input, a bad checkpoint or a bad configuration: the message says what to do."""


class DataError(CTRError):
    """A data config, data file or data set cannot be turned into a classification task."""


class CheckpointError(CTRError):
    """A checkpoint directory is missing files, corrupt, or made for another encoder."""


class TaskError(CTRError):
    """An unknown task name or task id."""
