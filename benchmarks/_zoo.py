"""Deprecated alias of :mod:`benchmarks._common` for scripts that still import ``_zoo``.

Import ``benchmarks._common`` instead (and run the script with ``python -m benchmarks.<name>``).
"""

try:
    from ._common import *  # noqa: F401,F403
    from ._common import CACHE, fashion_subset, machine_description, print_table, train_backbone  # noqa: F401
except ImportError:  # imported as a top-level module: benchmarks/ is on sys.path
    from _common import *  # noqa: F401,F403
    from _common import CACHE, fashion_subset, machine_description, print_table, train_backbone  # noqa: F401
