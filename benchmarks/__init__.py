"""`make bench`: ratio tables measured side by side in one process (see benchmarks/common.py)."""
