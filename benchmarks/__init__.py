"""Benchmark scripts of repens_sklearn; run them from the repository root as modules,
e.g. ``python -m benchmarks.bench_selection --quick``. Shared helpers: ``benchmarks._common``.
"""
