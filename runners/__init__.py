"""Zoo parsing, model loading, architecture adapters, corpora, the job loop, the Parquet store, the CLI."""
