"""Model access: the zoo file and its entries, where weights are and what identifies them, loading,
architecture adapters and the checks that stop garbage early. The default zoo (``models.yaml``)
and the config-only shapes (``configs/``) ship here."""
