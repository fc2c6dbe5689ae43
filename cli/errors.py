"""The one error type the command line reports as a single line (exit code 2)."""


class CliError(Exception):
    """A user mistake (zoo, corpus, option, file): its message is the one line shown."""
