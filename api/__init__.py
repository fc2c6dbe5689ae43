"""idsuite: identifiability in transformers (Brunner et al., ICLR 2020) as a repeatable benchmark.

The package's one top-level name. Its parts install beneath it from the repository's top-level
folders: ``idsuite.suite`` (the metric battery, pure tensor maths), ``idsuite.runners`` (zoo, model
access, probing, the job loop), ``idsuite.results`` (the store), ``idsuite.leaderboard`` (the app and
the paper export) and ``idsuite.cli`` (the ``idsuite`` command). This folder (``api/`` in the
repository) is the package itself.
"""

import importlib.metadata

__version__ = importlib.metadata.version("idsuite")
