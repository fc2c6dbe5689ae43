"""The ``idsuite`` command line: it sits above the runners and the leaderboard and imports them only
for the command that needs them (``idsuite --help`` and ``idsuite list`` import no torch)."""
