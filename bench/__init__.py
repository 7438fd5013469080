"""Benchmarks that compare the scheduler with reference apps measured in the same run."""
