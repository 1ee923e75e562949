"""Many runs: sweeps (designs, workers, Dask), their analysis, EMA Workbench, progress lines."""
