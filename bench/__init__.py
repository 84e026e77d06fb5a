"""fastbp's benchmarks: the asv suite (benchmarks.py) and the side-by-side comparison (compare.py)."""
