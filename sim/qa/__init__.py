"""Checking the model: liqsim verify (provenance), liqsim validate, benchmarks and the golden
record."""
