import os

# Third-party entry points must not change what the tests see; plugin tests
# opt back in by faking entry points explicitly.
os.environ.setdefault("REPENS_SKLEARN_DISABLE_PLUGIN_AUTOLOAD", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

# Test models are tiny: one thread is faster than two and immune to a busy machine.
torch.set_num_threads(1)


@pytest.fixture
def fresh_plugin_manager():
    """A plugin manager rebuilt for the test and forgotten afterwards."""
    from repens_sklearn import _plugins

    _plugins.reset_plugin_manager()
    yield _plugins
    _plugins.reset_plugin_manager()
