"""What the torch estimators share behaves the same in each (the shared base)."""

import numpy as np
import pytest
import torch
from sklearn.base import is_classifier
from sklearn.frozen import FrozenEstimator
from torch import nn

import repens_sklearn
from repens_sklearn import EnSiamPretrainer, FineTuneClassifier, MeanTTAEmbedder
from repens_sklearn._base import module_on

SMALL = {"hidden_dim": 16, "embedding_dim": 8}
ESTIMATORS = {
    "metta": lambda **kw: MeanTTAEmbedder(
        "mlp", backbone_params=SMALL, policy="gaussian_noise", n_augmentations=2, **kw
    ),
    "finetune": lambda **kw: FineTuneClassifier(
        "mlp", backbone_params=SMALL, max_steps=2, batch_size=8, **kw
    ),
    "ensiam": lambda **kw: EnSiamPretrainer(
        "mlp",
        backbone_params=SMALL,
        policy="gaussian_noise",
        max_epochs=1,
        projector_dim=8,
        predictor_hidden_dim=4,
        **kw,
    ),
}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(24, 6)).astype(np.float32), np.arange(24) % 2


@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize("device", [None, "cpu", torch.device("cpu"), "auto"])
def test_every_estimator_accepts_the_same_devices(name, device, data):
    X, y = data
    est = ESTIMATORS[name](device=device, random_state=0).fit(X, y)
    assert est.transform(X).shape[0] == 24 if hasattr(est, "transform") else est.predict(X).shape


@pytest.mark.parametrize("name", ESTIMATORS)
def test_tags_repr_and_freezing_do_not_depend_on_the_hardware(name, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    est = ESTIMATORS[name](device="cuda")
    assert "device='cuda'" in repr(est)
    assert est.__sklearn_tags__() is not None
    assert is_classifier(est) == (name == "finetune")
    FrozenEstimator(est)
    with pytest.raises(ValueError, match="device='cuda' was requested but CUDA is not available"):
        est.fit(np.zeros((4, 6), np.float32), [0, 1, 0, 1])


@pytest.mark.parametrize("name", ESTIMATORS)
def test_fit_leaves_the_callers_random_state_alone(name, data, monkeypatch):
    X, y = data
    torch.manual_seed(123)
    before = torch.get_rng_state()
    cuda_seeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: cuda_seeded.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: cuda_seeded.append(seed))
    ESTIMATORS[name](device="cpu", random_state=0).fit(X, y)
    assert torch.equal(torch.get_rng_state(), before)
    assert cuda_seeded == []  # torch.manual_seed would have reseeded every CUDA generator


@pytest.mark.parametrize(
    "key",
    [
        "device",
        "input_shape",
        "batch_size",
        "random_state",
        "verbose",
        "backbone",
        "backbone_params",
        "policy_params",
        "preprocess",
        "img_size",
        "crop_pct",
        "num_workers",
    ],
)
def test_shared_parameters_have_one_constraint(key):
    constraints = [ESTIMATORS[name]()._parameter_constraints[key] for name in ESTIMATORS]
    assert all(c is constraints[0] or c == constraints[0] for c in constraints)


def test_momentum_and_max_epochs_agree():
    ensiam = EnSiamPretrainer._parameter_constraints
    finetune = FineTuneClassifier._parameter_constraints
    assert ensiam["momentum"] == finetune["momentum"]
    with pytest.raises(Exception, match="momentum"):
        EnSiamPretrainer(momentum=1.0).fit(np.zeros((4, 6), np.float32))


@pytest.mark.parametrize("name", ESTIMATORS)
def test_bad_policy_params_name_the_policy_in_every_estimator(name, data):
    X, y = data
    est = ESTIMATORS[name](device="cpu").set_params(
        policy="gaussian_noise", policy_params={"sigma": 1}
    )
    with pytest.raises(
        ValueError,
        match=r"policy='gaussian_noise' with policy_params="
        r"\{'sigma': 1\}: .*sigma",
    ):
        est.fit(X, y)


def test_module_on_never_moves_the_fitted_module():
    module = nn.Linear(2, 2)
    assert module_on(module, "cpu") is module
    moved = module_on(module, torch.device("meta"))
    assert moved is not module and moved.weight.device.type == "meta"
    assert module.weight.device.type == "cpu"


def test_transform_uses_the_fitted_backbone_in_place_on_its_device(data):
    X, _ = data
    est = ESTIMATORS["metta"](device="cpu", random_state=0).fit(X)
    backbone = est.backbone_
    est.transform(X)
    assert est.backbone_ is backbone


def test_all_lists_exactly_the_documented_public_names():
    import types

    exported = {
        name
        for name, obj in vars(repens_sklearn).items()
        if not name.startswith("_") and not isinstance(obj, types.ModuleType)
    }
    assert exported == set(repens_sklearn.__all__) - {"__version__"}
    for name in exported - {"hookimpl"}:
        obj = getattr(repens_sklearn, name)
        assert obj.__module__.startswith("repens_sklearn"), name
        assert (obj.__doc__ or "").strip(), f"{name} has no docstring"


def _package_trees():
    """``(relative path, AST)`` of every module but ``_compat.py``, the one allowed privates."""
    import ast
    import pathlib

    package = pathlib.Path(repens_sklearn.__file__).parent
    return [
        (path.relative_to(package), ast.parse(path.read_text()))
        for path in sorted(package.rglob("*.py"))
        if path.name != "_compat.py"
    ]


@pytest.mark.parametrize("library", ["sklearn", "skorch"])
def test_only_the_compat_module_imports_private_names(library):
    import ast

    offenders = []
    for path, tree in _package_trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == library:
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private or any(part.startswith("_") for part in node.module.split(".")):
                    offenders.append(f"{path}: {node.module} {private}")
            elif isinstance(node, ast.Import):
                offenders += [
                    f"{path}: {a.name}"
                    for a in node.names
                    if a.name.split(".")[0] == library
                    and any(part.startswith("_") for part in a.name.split("."))
                ]
    assert offenders == []


def _skorch_private_members():
    """Private members of skorch's classes, less those every torch / sklearn object has."""
    import inspect

    import skorch
    import skorch.callbacks
    from sklearn.base import BaseEstimator

    classes = [
        cls
        for module in (skorch, skorch.callbacks, skorch.history)
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__.startswith("skorch")
    ]
    private = {
        name
        for cls in classes
        for name in dir(cls)
        if name.startswith("_") and not name.startswith("__")
    }
    return private - set(dir(torch.nn.Module)) - set(dir(BaseEstimator))


def test_no_private_skorch_member_is_used_or_overridden():
    # skorch's private methods (``_step_optimizer``, ``_set_training``,
    # ``Checkpoint._f_kwargs``) change between releases: only public hooks, or _compat.py
    import ast

    private = _skorch_private_members()
    assert {"_step_optimizer", "_set_training", "_f_kwargs", "_optimizers"} <= private
    offenders = []
    for path, tree in _package_trees():
        methods = {
            item
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef)
            for item in node.body
            if isinstance(item, ast.FunctionDef)
        }
        for node in ast.walk(tree):
            name = (
                node.attr
                if isinstance(node, ast.Attribute)
                else node.name
                if node in methods
                else None
            )
            if name in private:
                offenders.append(f"{path}:{node.lineno} {name}")
    assert offenders == []


def test_warnings_point_at_the_users_line():
    X = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)
    with pytest.warns(UserWarning, match="fixed views") as record:
        MeanTTAEmbedder("convnet_small", policy="multiscale", n_augmentations=9).fit(X)
    assert record[0].filename == __file__
