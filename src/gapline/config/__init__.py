"""The configuration: the structured schema with each range and choice beside its field, the
checks that refuse a bad value in one line, params.yaml (composition, loading, drift), the task
table every stage reads, provenance digests, and the user code a config names."""
