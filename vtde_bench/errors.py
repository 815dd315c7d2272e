"""The two exception types a user of vtde-bench can meet.

`UserError` is bad input or usage (exit code 2): its message is one line that
says what is wrong and how to fix it. `RunFailure` is a failure at run time
that the user did not cause by their input (exit code 3).
"""


class VtdeBenchError(Exception):
    """Base class of the errors vtde-bench raises on purpose."""

    exit_code = 3


class UserError(VtdeBenchError):
    """Bad input or usage: a missing file, a bad task card, a model that is not a dual encoder."""

    exit_code = 2


class RunFailure(VtdeBenchError):
    """A failure while running that is not the user's input: NaN embeddings, a crashed forward pass."""

    exit_code = 3


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during the work, with what was kept: "interrupted while embedding images; 6 of 10 chunks saved,
    rerun to resume". A `KeyboardInterrupt`, so that code which stops on one still does."""
