"""turnq's benchmarks: `python -m turnq.bench` (see README, "Performance")."""
