"""Reference apps the benchmarks compare against."""
