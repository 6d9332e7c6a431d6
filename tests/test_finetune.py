"""FineTuneClassifier, its paper schedule, and make_finetune_sweep."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.preprocessing import FunctionTransformer

from repens_sklearn import FineTuneClassifier, TransferabilitySelector, make_finetune_sweep
from repens_sklearn.datasets import load_digits_images
from repens_sklearn.selection import PaperSchedule

SMALL = {"hidden_dim": 32, "embedding_dim": 16}


@pytest.fixture(scope="module")
def digits(digits_flat):
    X, y = digits_flat
    return X[:300], y[:300]


def test_paper_schedule_values():
    f = PaperSchedule(100)
    # linear warm-up over the first 20 steps, full rate to 40, then x0.1 per 20 steps
    assert [f(s) for s in (0, 9, 19)] == pytest.approx([0.05, 0.5, 1.0])
    assert [f(s) for s in (20, 39, 40, 59, 60, 79, 80, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    labels = np.array([f"digit{i}" for i in range(10)])[y]
    clf = FineTuneClassifier(
        "mlp",
        backbone_params=SMALL,
        lr=0.1,
        max_steps=150,
        batch_size=32,
        device="cpu",
        random_state=0,
    ).fit(X, labels)
    return clf, X, labels


def test_learns_with_string_labels(fitted):
    clf, X, labels = fitted
    assert list(clf.classes_) == sorted(set(labels))
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert clf.predict(X).dtype == labels.dtype
    assert clf.score(X, labels) > 0.85


def test_exact_step_count_and_lr_follow_the_schedule(fitted):
    clf, _, _ = fitted
    batches = clf.net_.history[-1]["batches"]
    assert len(batches) == 150  # one skorch epoch of exactly max_steps batches
    lrs = np.array([b["event_lr"] for b in batches])
    expected = 0.1 * np.array([PaperSchedule(150)(s) for s in range(150)])
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)


def test_reproducible_and_picklable(fitted, digits):
    clf, X, labels = fitted
    again = clone(clf).fit(X, labels)
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X), rtol=1e-5)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))


def test_whole_model_is_trained(fitted):
    from repens_sklearn import create_backbone
    from repens_sklearn._compute import seed_from

    clf, _, _ = fitted
    torch.manual_seed(seed_from(0))  # the initialisation fit() starts from
    init = create_backbone("mlp", in_features=64, **SMALL)
    tuned = clf.as_backbone()
    assert tuned.embedding_dim == 16 and clf.embedding_dim_ == 16
    moved = [not torch.allclose(p0, p1) for p0, p1 in zip(init.parameters(), tuned.parameters())]
    assert len(moved) > 2 and all(moved)
    assert clf.net_.module_.head.out_features == 10


def test_policy_runs_on_training_batches_only(digits):
    X, y = digits
    calls = []

    def policy(x, generator):
        calls.append((x.shape[0], x.device.type, generator.device.type))
        return x + 0.01 * torch.randn(x.shape, generator=generator, device=x.device)

    clf = FineTuneClassifier(
        "mlp",
        backbone_params=SMALL,
        max_steps=7,
        batch_size=16,
        policy=policy,
        device="cpu",
        random_state=0,
    ).fit(X, y)
    # one probe in fit checks that the policy keeps the shape, then one call per step
    assert calls == [(1, "cpu", "cpu")] + [(16, "cpu", "cpu")] * 7
    clf.predict(X)
    assert len(calls) == 8


def test_registered_policy_by_name(digits):
    X, y = digits
    a = FineTuneClassifier(
        "mlp",
        backbone_params=SMALL,
        max_steps=5,
        batch_size=16,
        policy="gaussian_noise",
        policy_params={"std": 0.5},
        device="cpu",
        random_state=0,
    ).fit(X, y)
    b = clone(a).set_params(policy=None, policy_params=None).fit(X, y)
    assert not np.allclose(a.predict_proba(X), b.predict_proba(X))


def test_images_with_a_conv_backbone():
    X, y = load_digits_images(return_X_y=True)
    clf = FineTuneClassifier(
        "convnet_small",
        backbone_params={"width": 8},
        lr=0.05,
        max_steps=4,
        batch_size=16,
        device="cpu",
        random_state=0,
    ).fit(X[:64], y[:64])
    assert clf.predict_proba(X[:5]).shape == (5, 10)
    assert clf.input_shape_ == (1, 8, 8)


def test_sweep_names_and_parameters():
    sweep = make_finetune_sweep(
        ["mlp", ("small", "mlp")], lrs=(0.1, 0.01), steps=(10, 40), batch_size=8, device="cpu"
    )
    names = [n for n, _ in sweep]
    assert names[:4] == [
        "mlp-lr0.1-steps10",
        "mlp-lr0.1-steps40",
        "mlp-lr0.01-steps10",
        "mlp-lr0.01-steps40",
    ]
    assert len(sweep) == 8 and names[4].startswith("small-")
    est = dict(sweep)["mlp-lr0.01-steps40"]
    assert (est.lr, est.max_steps, est.batch_size, est.backbone) == (0.01, 40, 8, "mlp")


def test_sweep_from_a_fitted_selector(digits):
    X, y = digits
    sel = TransferabilitySelector([("mlp", "mlp"), ("raw", FunctionTransformer())], n_select=2)
    sel.fit(X[:80], y[:80])
    sel.selected_candidates_ = [c for c in sel.selected_candidates_ if c[0] == "mlp"]
    sweep = make_finetune_sweep(sel, lrs=(0.1,), steps=(5,))
    assert [n for n, _ in sweep] == ["mlp-lr0.1-steps5"]
    assert sweep[0][1].backbone == "mlp"
    sel.selected_candidates_ = [("raw", FunctionTransformer())]
    with pytest.raises(TypeError, match="candidate FunctionTransformer cannot be fine-tuned"):
        make_finetune_sweep(sel)


def test_error_duplicate_sweep_names():
    with pytest.raises(ValueError, match=r"duplicate names \['mlp'\]"):
        make_finetune_sweep(["mlp", "mlp"])


def test_error_one_class(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="at least 2 classes in y; got 1 class"):
        FineTuneClassifier("mlp", max_steps=1).fit(X, np.zeros(len(X)))


def test_error_backbone_rejects_input(digits):
    X, y = digits
    with pytest.raises(ValueError, match="backbone 'convnet_small' cannot take inputs of shape"):
        FineTuneClassifier("convnet_small", max_steps=1, device="cpu").fit(X, y)


def test_error_unknown_backbone(digits):
    X, y = digits
    with pytest.raises(ValueError, match="resnet"):
        FineTuneClassifier("resnet_does_not_exist", max_steps=1).fit(X, y)


def test_error_policy_params_without_policy(digits):
    X, y = digits
    with pytest.raises(ValueError, match="policy_params=.* given but policy=None"):
        FineTuneClassifier("mlp", policy_params={"std": 1.0}, max_steps=1).fit(X, y)


def test_error_bad_schedule(digits):
    X, y = digits
    with pytest.raises(ValueError, match="'schedule' parameter"):
        FineTuneClassifier("mlp", schedule="cosine", max_steps=1).fit(X, y)


def test_sweep_from_selected_modules_keeps_the_module(digits):
    from repens_sklearn import create_backbone

    X, y = digits
    module = create_backbone("mlp", in_features=64, **SMALL)
    sel = TransferabilitySelector([("mine", module)]).fit(X[:60], y[:60])
    ((name, est),) = make_finetune_sweep(sel, lrs=(0.1,), steps=(3,), device="cpu", augment=False)
    assert name == "mine-lr0.1-steps3" and isinstance(est.backbone, type(module))
    for p0, p1 in zip(module.parameters(), est.backbone.parameters()):  # same weights (a clone)
        assert torch.equal(p0, p1)
    est.fit(X[:60], y[:60])
    assert est.predict(X[:3]).shape == (3,)


def test_sweep_follows_the_papers_recipe(digits):
    ((_, est),) = make_finetune_sweep(["convnet_small"], lrs=(0.1,), steps=(5,))
    assert (est.momentum, est.head_init, est.policy) == (0.99, "zeros", "crop_flip")
    assert est.policy_params == {
        "scale": (0.87890625, 0.87890625),
        "ratio": (1.0, 1.0),
        "flip_p": 0.5,
    }  # (480 / 512) ** 2: a 480 crop of 512
    ((_, plain),) = make_finetune_sweep(
        ["mlp"], lrs=(0.1,), steps=(5,), augment=False, momentum=0.9
    )
    assert (plain.policy, plain.momentum) == (None, 0.9)


def test_zero_head_starts_from_uniform_probabilities(digits):
    X, y = digits
    clf = FineTuneClassifier(
        "mlp",
        backbone_params=SMALL,
        head_init="zeros",
        lr=1e-12,
        max_steps=1,
        batch_size=8,
        device="cpu",
        random_state=0,
    )
    np.testing.assert_allclose(clf.fit(X[:40], y[:40]).predict_proba(X[:5]), 0.1, atol=1e-6)
    default = clf.set_params(head_init="default").fit(X[:40], y[:40]).predict_proba(X[:5])
    assert np.abs(default - 0.1).max() > 1e-3


def test_batchnorm_statistics_are_recalibrated_after_training(digits):
    X, y = digits
    X = X.reshape(-1, 1, 8, 8)

    def fit(recalibrate):
        return FineTuneClassifier(
            "convnet_small",
            backbone_params={"width": 4},
            lr=0.05,
            max_steps=3,
            batch_size=16,
            recalibrate_bn=recalibrate,
            device="cpu",
            random_state=0,
        ).fit(X[:64], y[:64])

    stale, fresh = fit(False), fit(True)
    bn_stale = stale.net_.module_.backbone.features[1]
    bn_fresh = fresh.net_.module_.backbone.features[1]
    # the same trained weights; only the running statistics differ
    torch.testing.assert_close(bn_stale.weight, bn_fresh.weight)
    with torch.no_grad():
        first = fresh.net_.module_.backbone.features[0]
        acts = first(torch.as_tensor(X[:64], dtype=torch.float32))
    torch.testing.assert_close(
        bn_fresh.running_mean, acts.mean(dim=(0, 2, 3)), atol=1e-4, rtol=1e-3
    )
    assert not torch.allclose(bn_stale.running_mean, acts.mean(dim=(0, 2, 3)), atol=1e-3)


def test_sweep_fine_tunes_a_candidate_at_the_resolution_it_was_ranked_at(digits):
    from repens_sklearn import MeanTTAEmbedder

    X, y = digits
    X = X.reshape(-1, 1, 8, 8)
    candidate = MeanTTAEmbedder(
        "convnet_small", n_augmentations=0, img_size=12, crop_pct=1.0, preprocess=False
    )
    sel = TransferabilitySelector([("c", candidate)]).fit(X[:40], y[:40])
    ((_, est),) = make_finetune_sweep(sel, lrs=(0.1,), steps=(3,), augment=False)
    assert (est.img_size, est.crop_pct, est.preprocess) == (12, 1.0, False)
