"""Running the battery. Orchestration here: the job loop (``jobs``), getting a model ready
(``preparation``), cutting batches (``batching``), keying and writing cells (``cells``), the Ray
backend (``distributed``), run settings, failures and provenance. Model access in ``models`` (the
zoo, weights, loading, adapters, health checks); probing in ``probing`` (corpora, the traced forward
pass, the context-mixing probe)."""
