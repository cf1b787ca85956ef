"""Running a sweep: the runner, its executors (local, processes, Dask), progress."""
