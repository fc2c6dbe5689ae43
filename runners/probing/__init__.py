"""Probing a loaded model: probe corpora, the traced forward pass that feeds the metrics, the
context-mixing probe and linearised feed-forward maps."""
