import contextlib
import os

# Third-party entry points must not change what the tests see; plugin tests
# opt back in by faking entry points explicitly.
os.environ.setdefault("REPENS_SKLEARN_DISABLE_PLUGIN_AUTOLOAD", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# The suite's expected values are float32: precision="auto" stays float32 on CPUs with
# native bf16 too (tests/test_precision.py unsets it to test the bf16 path).
os.environ.setdefault("REPENS_SKLEARN_PRECISION", "float32")

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


# --- plugins: real module objects behind fake entry points (no packages installed) ---

import importlib.metadata  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402

from repens_sklearn import hookimpl  # noqa: E402


def plugin_module(name, **hooks):
    """A real module object holding hook implementations, as a plugin package would."""
    module = types.ModuleType(name)
    for hook_name, mapping in hooks.items():

        def impl(mapping=mapping):
            return mapping

        impl.__name__ = hook_name
        setattr(module, hook_name, hookimpl(impl))
    return module


class _FakeEntryPoint:
    def __init__(self, name, module_name, error=None):
        self.name, self.value, self.group = name, module_name, "repens_sklearn"
        self.error = error

    def load(self):
        if self.error is not None:
            raise self.error
        return sys.modules[self.value]


@pytest.fixture
def fake_entry_points(monkeypatch, fresh_plugin_manager):
    """Install fake entry points (and their modules) and enable autoload."""
    monkeypatch.delenv("REPENS_SKLEARN_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    points = []

    def add(name, module=None, error=None):
        if module is not None:
            monkeypatch.setitem(sys.modules, module.__name__, module)
        points.append(_FakeEntryPoint(name, module.__name__ if module else name, error))

    def entry_points(group=None, **kwargs):
        assert group == "repens_sklearn"
        return list(points)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    return add


# --- image files and crashes shared by the streaming / resume tests ---


def grey_png_files(folder, n, size=8, seed=0):
    """``n`` random grey ``size`` x ``size`` PNGs written to ``folder``, as paths in name order."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L").save(path)
        paths.append(str(path))
    return paths


def crash_transform_after(monkeypatch, n_calls):
    """``MeanTTAEmbedder.transform`` raises on its ``n_calls + 1``-th call, like a crash.

    Returns the call counter (``{"n": calls so far}``).
    """
    from repens_sklearn import MeanTTAEmbedder

    real = MeanTTAEmbedder.transform
    calls = {"n": 0}

    def transform(self, X):
        if calls["n"] >= n_calls:
            raise RuntimeError("simulated crash")
        calls["n"] += 1
        return real(self, X)

    monkeypatch.setattr(MeanTTAEmbedder, "transform", transform)
    return calls


# --- a tiny EnSiam configuration shared by the pretraining, resume and run-identity tests ---

ENSIAM_SMALL = dict(
    backbone="mlp",
    backbone_params={"hidden_dim": 16, "embedding_dim": 8},
    policy="gaussian_noise",
    projector_dim=16,
    predictor_hidden_dim=8,
    batch_size=16,
    device="cpu",
    random_state=0,
)


# --- a real dask scheduler for the scale-out tests ---


@contextlib.contextmanager
def loopback_dask_cluster():
    """Yield ``(client, tasks)``: a scheduler and two workers over TCP on loopback.

    Worker threads rather than processes keep the tests quick on a busy 2-core machine
    (starting processes that import torch takes a minute there); tasks and results are
    still serialised over the wire. ``tasks.data`` lists the tasks that ran.
    """
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            protocol="tcp",
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
        distributed.get_task_stream(client) as tasks,
    ):
        yield client, tasks
