"""Public signatures and docstrings agree, and each shared parameter has one definition.

In the manner of scikit-learn's ``test_docstring_parameters``: the numpydoc
Parameters section of every public class, function and estimator method lists
exactly the signature's parameters, in its order, with its defaults. A shared
parameter (``repens_sklearn._base.PARAMETER_CONSTRAINTS``) has one constraint
object and one docstring entry, filled in by ``fill_parameter_docs``.
Parsing is numpydoc's (``numpydoc.docscrape``, in the ``test`` extra).
"""

import ast
import importlib
import inspect
import pkgutil
import textwrap
from collections import Counter

import pytest

import repens_sklearn

docscrape = pytest.importorskip("numpydoc.docscrape")


def _public_modules():
    names = ["repens_sklearn"]
    for info in pkgutil.walk_packages(repens_sklearn.__path__, "repens_sklearn."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def _public_objects():
    """``{qualified name: object}`` of the public classes and functions, each once."""
    found = {}
    for module_name in _public_modules():
        module = importlib.import_module(module_name)
        names = getattr(module, "__all__", None)
        if names is None:  # no __all__: the public names defined in the module itself
            names = [
                n
                for n, obj in vars(module).items()
                if not n.startswith("_") and getattr(obj, "__module__", None) == module_name
            ]
        for name in names:
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                continue  # exceptions take a message, as Python's own
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj not in found.values():
                found[f"{module_name}.{name}"] = obj
    return found


PUBLIC = _public_objects()
ESTIMATORS = {
    name: obj
    for name, obj in PUBLIC.items()
    if inspect.isclass(obj) and hasattr(obj, "_parameter_constraints")
}


def _estimator_methods():
    """The public methods the library defines on its estimators."""
    methods = {}
    for name, cls in ESTIMATORS.items():
        for method_name, method in inspect.getmembers(cls, inspect.isfunction):
            if not method_name.startswith("_") and method.__module__.startswith("repens_sklearn"):
                methods[f"{name}.{method_name}"] = method
    return methods


METHODS = _estimator_methods()


def _signature_names(obj):
    sig = inspect.signature(obj)
    stars = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return [
        stars.get(p.kind, "") + p.name
        for p in sig.parameters.values()
        if p.name not in ("self", "cls")
    ]


def _documented(obj):
    """``[(name, type, description lines)]`` of the docstring's Parameters section."""
    doc = docscrape.NumpyDocString(inspect.getdoc(obj) or "")
    return [
        (name.strip(), param.type, param.desc)
        for param in doc["Parameters"]
        for name in param.name.split(",")
    ]


def _doc_default(type_):
    """The value after ``default=`` in a numpydoc type, when it is a Python literal."""
    if "default=" not in type_:
        return inspect.Parameter.empty
    text = type_.rsplit("default=", 1)[1].strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return inspect.Parameter.empty  # a name (e.g. default=ProgressBar): not comparable


# The top-level API functions whose docstrings do not document their parameters yet (their
# modules belong to other items); strict, so documenting one makes this list shrink.
UNDOCUMENTED: set = set()


@pytest.mark.parametrize("name", sorted({**PUBLIC, **METHODS}))
def test_parameters_section_lists_the_signature_in_order(name):
    """A Parameters section, where there is one, is exactly the signature, in its order."""
    obj = {**PUBLIC, **METHODS}[name]
    documented = [entry[0] for entry in _documented(obj)]
    if documented:
        assert documented == _signature_names(obj)


@pytest.mark.parametrize("name", sorted({**PUBLIC, **METHODS}))
def test_documented_defaults_are_the_signature_defaults(name):
    obj = {**PUBLIC, **METHODS}[name]
    parameters = inspect.signature(obj).parameters
    for param_name, type_, _ in _documented(obj):
        documented = _doc_default(type_)
        if documented is not inspect.Parameter.empty and param_name in parameters:
            assert documented == parameters[param_name].default, (param_name, type_)


def _api_names():
    names = set(ESTIMATORS) | set(METHODS)
    names |= {
        f"repens_sklearn.{n}" for n in repens_sklearn.__all__ if f"repens_sklearn.{n}" in PUBLIC
    }
    return sorted(names)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason="not documented yet"))
        if n in UNDOCUMENTED
        else n
        for n in _api_names()
    ],
)
def test_estimators_and_api_functions_document_every_parameter(name):
    """Estimators, their public methods and the top-level functions have the section."""
    obj = {**PUBLIC, **METHODS}[name]
    if _signature_names(obj):
        assert [entry[0] for entry in _documented(obj)] == _signature_names(obj)


def test_finetune_docstring_follows_its_signature():
    from repens_sklearn import FineTuneClassifier

    documented = [entry[0] for entry in _documented(FineTuneClassifier)]
    assert documented[:9] == [
        "backbone",
        "backbone_params",
        "lr",
        "max_steps",
        "batch_size",
        "schedule",
        "momentum",
        "weight_decay",
        "recalibrate_bn",
    ]


def test_every_shared_parameter_has_one_constraint_and_one_entry():
    from repens_sklearn._base import PARAMETER_CONSTRAINTS, PARAMETER_DOCS

    entries = [
        line.split(" : ")[0]
        for line in PARAMETER_DOCS.strip().splitlines()
        if not line.startswith(" ")
    ]
    assert entries == list(PARAMETER_CONSTRAINTS)


# Estimators whose docstrings still write their shared parameters by hand (their files
# belong to other items); strict, so filling them from _base makes this list shrink.
HAND_WRITTEN = {
    "ConcatEmbedder",
    "TransferabilitySelector",
    "KNNModelSelector",
    "GreedyEnsembleClassifier",
}
# A shared parameter an estimator widens, with the values it adds.
WIDENED = {("FineTuneClassifier", "policy"): [None]}  # None: no train-time augmentation


def _shared(cls):
    from repens_sklearn._base import PARAMETER_CONSTRAINTS

    return [name for name in _signature_names(cls) if name in PARAMETER_CONSTRAINTS]


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_shared_constraints_are_the_one_object(name):
    from repens_sklearn._base import PARAMETER_CONSTRAINTS

    cls = ESTIMATORS[name]
    for param in _shared(cls):
        constraint = cls._parameter_constraints[param]
        added = WIDENED.get((cls.__name__, param))
        if added is None:
            assert constraint is PARAMETER_CONSTRAINTS[param], (cls.__name__, param)
        else:
            assert constraint == [*PARAMETER_CONSTRAINTS[param], *added]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason="hand-written entries"))
        if ESTIMATORS[n].__name__ in HAND_WRITTEN
        else n
        for n in sorted(ESTIMATORS)
    ],
)
def test_shared_parameter_text_is_the_one_definition(name):
    """Type and text of every shared parameter are _base's; the estimator may add lines."""
    from repens_sklearn._base import parameter_doc

    cls = ESTIMATORS[name]
    documented = {entry[0]: entry for entry in _documented(cls)}
    signature = inspect.signature(cls).parameters
    for param in _shared(cls):
        expected = _documented_entry(parameter_doc(param, signature[param].default))
        _, type_, desc = documented[param]
        assert expected[2] and type_ == expected[1], (param, type_)
        assert desc[: len(expected[2])] == expected[2], (cls.__name__, param)


def _documented_entry(entry_text):
    class _Doc:
        __doc__ = f"Summary.\n\nParameters\n----------\n{textwrap.dedent(entry_text)}\n"

    return _documented(_Doc)[0]


def test_shared_text_is_identical_across_estimators():
    """The torch estimators share each common entry: one type (default aside), one opening
    line (the whole shared text is checked against _base above)."""
    from repens_sklearn import (
        EnSiamPretrainer,
        FineTuneClassifier,
        LearnedEnsembleEmbedder,
        MeanTTAEmbedder,
    )

    classes = (MeanTTAEmbedder, FineTuneClassifier, EnSiamPretrainer, LearnedEnsembleEmbedder)
    counts = Counter(name for cls in classes for name in _signature_names(cls))
    texts = {}
    for cls in classes:
        for param, type_, desc in _documented(cls):
            if counts[param] > 1 and (cls, param) != (FineTuneClassifier, "policy"):  # widened
                texts.setdefault(param, set()).add((type_.rsplit(", default=", 1)[0], desc[0]))
    assert {param: len(variants) for param, variants in texts.items()} == dict.fromkeys(texts, 1)
    assert len(texts) >= 17  # the 13 of the backbone estimators, lr, momentum, weight_decay, epochs


def test_fill_parameter_docs_writes_the_entry_with_the_signature_default():
    from repens_sklearn._base import fill_parameter_docs

    @fill_parameter_docs
    def embed(X, *, batch_size=64, device="cpu"):
        """Embed.

        Parameters
        ----------
        X : array-like
            Inputs.
        {batch_size}
            It counts samples.
        {device}
        """

    assert inspect.cleandoc(embed.__doc__).split("----------\n")[1] == (
        "X : array-like\n"
        "    Inputs.\n"
        "batch_size : int, default=64\n"
        "    Size of the batches the network is run on.\n"
        "    It counts samples.\n"
        'device : "auto", str, torch.device or None, default="cpu"\n'
        '    ``"auto"`` or None: CUDA when available, else the CPU; otherwise a torch\n'
        '    device (``"cpu"``, ``"cuda:1"``, ...).'
    )


def test_fill_parameter_docs_refuses_a_parameter_not_in_the_signature():
    from repens_sklearn._base import fill_parameter_docs

    def embed(X):
        """Embed.

        Parameters
        ----------
        {device}
        """

    with pytest.raises(
        TypeError,
        match=r"^test_fill_parameter_docs_refuses_a_parameter_not_"
        r"in_the_signature.<locals>.embed's docstring documents \{device\}, "
        r"which is not in its signature$",
    ):
        fill_parameter_docs(embed)


def test_fill_parameter_docs_keeps_a_missing_docstring():
    from repens_sklearn._base import fill_parameter_docs

    def embed(X):
        pass

    assert fill_parameter_docs(embed).__doc__ is None
