"""Turning any failure inside one model's work into the one line its failed rows carry."""

from __future__ import annotations

MAX_MESSAGE = 300
"""Characters a failure's line keeps."""


class RunInterrupted(BaseException):
    """The user stopped the run (Ctrl-C, raised by the run's SIGINT handler): no model's failure,
    so it is not an ``Exception`` and nothing that contains a model's faults catches it."""


MODEL_FAULTS: tuple[type[BaseException], ...] = (Exception, SystemExit, KeyboardInterrupt)
"""What one model's work may raise and still be only that model's failure: any error, and the
``SystemExit`` or ``KeyboardInterrupt`` a model's own code (``trust_remote_code``) raises itself.
The user's Ctrl-C arrives as ``RunInterrupted`` instead."""


class ModelFailure(Exception):
    """A failure whose message is already the line to record (no exception type prefixed)."""


class NonFiniteValues(ModelFailure):
    """NaN or inf in a model's weights or activations."""


def one_line(e: BaseException, stage: str = "") -> str:
    """``stage: Type: first line of the message``, at most ``MAX_MESSAGE`` characters. PyTorch's
    internal-assert texts are replaced by what they mean for the user."""
    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    if "INTERNAL ASSERT FAILED" in text or "please report a bug to PyTorch" in text:
        first = "PyTorch failed inside one of its own checks (often NaN or inf in the inputs or weights)"
    line = first if isinstance(e, ModelFailure) else f"{type(e).__name__}: {first}" if first else type(e).__name__
    line = f"{stage}: {line}" if stage else line
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 1] + "…"
