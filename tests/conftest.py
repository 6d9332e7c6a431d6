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


@pytest.fixture(scope="session")
def digits_flat():
    """scikit-learn's digits as float32 vectors in [0, 1] (1,797 x 64) and labels."""
    import numpy as np
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y


@pytest.fixture(scope="session")
def digits_images():
    """The same digits as (N, 1, 8, 8) images, through the library's own loader."""
    from repens_sklearn import load_digits_images

    return load_digits_images(return_X_y=True)
