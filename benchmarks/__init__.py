"""botperf's benchmarks: every primitive measured against its peers in one process."""
