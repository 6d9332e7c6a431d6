"""scikit-learn's common estimator checks over every public estimator."""

import inspect

import pytest
from sklearn.base import BaseEstimator
from sklearn.utils.estimator_checks import parametrize_with_checks

import repens_sklearn

# One tiny, fast configuration per public estimator (2-D data: vector backbones
# and vector policies). Each issue adds its estimators here.
ESTIMATORS = [
]

# {estimator class name: {check name: reason}} for checks that cannot apply.
EXPECTED_FAILED_CHECKS = {
}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def _public_estimator_classes():
    classes = set()
    for name in repens_sklearn.__all__:
        obj = getattr(repens_sklearn, name)
        if inspect.isclass(obj) and issubclass(obj, BaseEstimator):
            classes.add(obj)
    return classes


def test_every_public_estimator_is_checked():
    checked = {type(est) for est in ESTIMATORS}
    missing = sorted(cls.__name__ for cls in _public_estimator_classes() - checked)
    assert not missing, f"public estimators missing from ESTIMATORS: {missing}"


@pytest.mark.parametrize("name", repens_sklearn.__all__)
def test_all_names_resolve(name):
    assert getattr(repens_sklearn, name) is not None
