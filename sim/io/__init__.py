"""One run on disk: run directories and manifests (atomic writes), the sweep ledger, the data
dictionary."""
