"""Running the battery: orchestration (the job loop, the Ray backend, run settings, failures,
provenance) here; model access in ``models`` (the zoo, weights, loading, adapters, health checks);
probing in ``probing`` (corpora, the traced forward pass, the context-mixing probe)."""
