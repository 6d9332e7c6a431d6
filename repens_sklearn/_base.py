"""What every torch estimator of the library shares.

One definition per shared parameter (constraint and docstring entry), backbone / policy / device
resolution, seeding through private generators, and the input pipeline.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import re
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import deprecated
from torch import nn

from ._compat import HasMethods, Interval, StrOptions
from ._compute import (
    AUTO_CHECK_SAMPLES,
    PRECISIONS,
    choose_precision,
    embed_inputs,
    inference_settings,
    make_generator,
    resolve_device,
    resolve_precision,
    seed_from,
)
from ._inputs import check_inputs, check_unit_range
from ._plugins import create_augmentation_policy
from ._preprocess import ImagePreprocessor, data_config
from .backbones import build_backbone, check_backbone_accepts

# One definition per shared parameter (issue #22): its constraint, the one list object every
# estimator's ``_parameter_constraints`` holds, and its numpydoc entry below. An estimator
# writes ``{name}`` on a line of its Parameters section; :func:`fill_parameter_docs` puts the
# entry there at import, the default read from the signature. Lines indented under ``{name}``
# continue the entry with what that estimator does with the parameter.
PARAMETER_CONSTRAINTS = {
    "backbone": [str, nn.Module, HasMethods(["as_backbone"])],
    "backbone_params": [dict, None],
    "policy": [str, callable],
    "policy_params": [dict, None],
    "preprocess": ["boolean"],
    "img_size": [Interval(Integral, 1, None, closed="left"), tuple, list, None],
    "crop_pct": [Interval(Real, 0, 1, closed="right"), None],
    "input_shape": [tuple, list, np.ndarray, None],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "num_workers": [Interval(Integral, 0, None, closed="left")],
    "precision": [StrOptions(set(PRECISIONS))],  # resolved by _compute.resolve_precision
    "device": [StrOptions({"auto"}), str, torch.device, None],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
    # training: 0 epochs is an untrained model (a baseline); SGD diverges at momentum 1
    "max_epochs": [Interval(Integral, 0, None, closed="left")],
    "lr": [Interval(Real, 0, None, closed="neither")],
    "momentum": [Interval(Real, 0, 1, closed="left")],
    "weight_decay": [Interval(Real, 0, None, closed="left")],
    # composites
    "memory": [None, str, HasMethods(["cache"])],
    "n_jobs": [Integral, None],
}

PARAMETER_DOCS = """
backbone : str, torch.nn.Module or fitted estimator
    A registered backbone name (:func:`~repens_sklearn.list_backbones`), a
    module (deep-copied; maps a batch to ``(batch, dim)``), or a fitted
    estimator of this library that has ``as_backbone()`` (e.g. a fitted
    :class:`~repens_sklearn.EnSiamPretrainer`). Wrap a fitted estimator in
    ``sklearn.frozen.FrozenEstimator`` to keep it fitted through ``clone``
    (``GridSearchCV``).
backbone_params : dict
    Keyword arguments for the backbone factory (registered names only).
    ``in_features`` / ``in_chans`` are filled in from the data.
policy : str or callable
    A registered augmentation policy
    (:func:`~repens_sklearn.list_augmentation_policies`) or a callable
    ``policy(x, generator) -> x_aug`` returning a batch of the same shape,
    drawn independently for every sample, on the device. Images are
    augmented as [0, 1] values at the backbone's resolution (see
    ``preprocess``); ``"gaussian_noise"`` augments vectors.
policy_params : dict
    Keyword arguments for the policy factory (registered names only).
preprocess : bool
    Feed a pretrained backbone (one with a ``pretrained_cfg``, as timm's
    models have) images prepared as in its pretraining: grey to RGB, resized
    and centre-cropped to its ``input_size`` (timm's evaluation transform),
    the ``policy`` applied at that resolution, then standardized with its
    ``mean``/``std``. False feeds the pixels as they are. Backbones without
    ``pretrained_cfg`` are never preprocessed.
img_size : int or (H, W)
    Resolution a pretrained backbone is fed at instead of its
    ``pretrained_cfg["input_size"]`` (timm's ``img_size``), e.g. 96 on a CPU.
crop_pct : float in (0, 1]
    Centre-crop fraction instead of the backbone's
    ``pretrained_cfg["crop_pct"]`` (1.0: no crop).
input_shape : tuple (C, H, W)
    Shape of one image when X is 2-D (flattened images) or a list of image
    files to resize (without a pretrained backbone; with one, files are
    decoded at its resolution).
batch_size : int
    Size of the batches the network is run on.
num_workers : int
    Processes decoding image files in parallel with the network (torch
    ``DataLoader`` workers); 0 decodes in the main process. Arrays are
    always sliced in place.
precision : {"auto", "float32", "bfloat16", "float16"}
    Arithmetic of the network's forward passes; outputs are float32 either
    way. ``"auto"``: after ``fit``, bfloat16 autocast where the device
    computes bf16 natively (CUDA from Ampere on; CPUs with AVX512-BF16 or
    AMX, read from their flags) and the fitted network's bf16 embeddings of
    16 fit samples all keep a cosine of at least 0.999 to float32 (3-4x
    faster on such CPUs); float32 otherwise (``precision_`` says which,
    ``precision_agreement_`` the cosine). ``"bfloat16"`` and ``"float16"``
    force autocast to that type (``"float16"`` is fast only where the device
    has it: CUDA, CPUs with AVX512-FP16; accuracy in ``docs/benchmarks.md``);
    ``"float32"`` gives today's exact float32 results. ``"bfloat16"`` and
    ``"float16"`` run convolutional backbones channels_last, ``"auto"`` too
    where the backbone runs in that layout (float32 included). The
    environment variable ``REPENS_SKLEARN_PRECISION`` decides ``"auto"`` when set.
device : "auto", str, torch.device or None
    ``"auto"`` or None: CUDA when available, else the CPU; otherwise a torch
    device (``"cpu"``, ``"cuda:1"``, ...).
random_state : int, RandomState instance or None
    Pass an int for reproducible results across calls.
verbose : int or bool
    Progress output; 0 or False is silent.
max_epochs : int
    Training epochs; 0 keeps the untrained model (a baseline).
lr : float
    Learning rate of the optimiser (> 0).
momentum : float in [0, 1)
    SGD momentum.
weight_decay : float
    Weight decay (L2 penalty) of the optimiser.
memory : str, joblib.Memory or None
    Cache of the members' fitted state and features (``joblib.Memory``, as in
    ``Pipeline``), keyed on all of X, module weights and the identity (path,
    size, modification time) of every file named in X or the members'
    parameters.
n_jobs : int or None
    Members run in parallel by ``joblib.Parallel`` (None: one, -1: all
    cores); ``joblib.parallel_config(backend="dask")`` runs them on a cluster.
"""


def _numpydoc_entries(block: str) -> dict:
    """``{name: (type, text lines)}`` of a block of numpydoc parameter entries."""
    entries, name = {}, None
    for line in block.strip("\n").splitlines():
        if line.startswith(" "):  # a description line of the entry above
            entries[name][1].append(line.strip())
        else:
            name, _, type_ = line.partition(" : ")
            entries[name] = (type_, [])
    return entries


_ENTRIES = _numpydoc_entries(PARAMETER_DOCS)
_PLACEHOLDER = re.compile(r"^([ \t]*)\{(\w+)\}[ \t]*$", re.MULTILINE)


def parameter_doc(name: str, default=inspect.Parameter.empty, indent: str = "    ") -> str:
    """The numpydoc entry of shared parameter ``name`` with ``default``, as in a docstring."""
    type_, text = _ENTRIES[name]
    if default is not inspect.Parameter.empty:
        type_ += f', default="{default}"' if isinstance(default, str) else f", default={default!r}"
    return "\n".join([f"{indent}{name} : {type_}", *(f"{indent}    {t}" for t in text)])


def fill_parameter_docs(obj):
    """Class or function decorator: every ``{name}`` line of the docstring becomes the
    shared entry of parameter ``name``, its default taken from ``obj``'s signature."""
    if obj.__doc__:
        signature = inspect.signature(obj)

        def entry(match):
            if match[2] not in signature.parameters:
                raise TypeError(
                    f"{obj.__qualname__}'s docstring documents {{{match[2]}}}, "
                    "which is not in its signature"
                )
            default = signature.parameters[match[2]].default
            return parameter_doc(match[2], default, indent=match[1])

        obj.__doc__ = _PLACEHOLDER.sub(entry, obj.__doc__)
    return obj


def _constraints(*names) -> dict:
    return {name: PARAMETER_CONSTRAINTS[name] for name in names}


# The groups the estimators spread into their ``_parameter_constraints``.
DEVICE_CONSTRAINT = PARAMETER_CONSTRAINTS["device"]
COMMON_CONSTRAINTS = _constraints("device", "input_shape", "batch_size", "random_state", "verbose")
TRAINING_CONSTRAINTS = _constraints("max_epochs", "momentum")
BACKBONE_CONSTRAINTS = {
    **_constraints(
        "backbone",
        "backbone_params",
        "policy",
        "policy_params",
        "preprocess",
        "img_size",
        "crop_pct",
        "num_workers",
        "precision",
    ),
    **COMMON_CONSTRAINTS,
}


@contextlib.contextmanager
def seeded_init(seed: int):
    """Run the body (module initialisation) with torch's CPU RNG seeded, then restore it.

    Only the CPU default generator is seeded (``torch.manual_seed`` would also
    reseed every CUDA generator, which ``fork_rng(devices=[])`` does not restore):
    the caller's random state, CPU and CUDA, is the same afterwards.
    """
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))
        yield


class TorchEstimatorMixin:
    """What the backbone-based estimators share (scikit-learn's ``BaseSGD`` pattern).

    Subclasses define the parameters named in :data:`BACKBONE_CONSTRAINTS` and
    call :meth:`_fit_backbone` in ``fit``; it validates X, builds the backbone
    seeded from ``random_state``, resolves the preprocessing of a pretrained
    backbone and probes the backbone (and policy) on one prepared example.
    """

    def _resolved_device(self) -> torch.device:
        return resolve_device(self.device)

    def _seed(self) -> int:
        return seed_from(self.random_state)

    def _precision_dtype(self, device, *, training=False) -> torch.dtype:
        """The autocast dtype of ``precision`` for training and in ``fit`` (before the check)."""
        return resolve_precision(getattr(self, "precision", "auto"), device, training=training)

    def _inference_settings(self, module, device) -> tuple[torch.dtype, bool]:
        """``(autocast dtype, channels_last)`` of the forward passes after ``fit``."""
        precision = getattr(self, "precision", "auto")
        choice = getattr(self, "_precision_choice", None)
        return inference_settings(precision, choice, device, module)

    def _choose_precision(self, module, inputs, device, network_input=None, *, logits=False):
        """Set ``precision_``, ``precision_agreement_`` (and the choice) for the fitted ``module``.

        The check batch is the first samples of ``inputs`` made into what
        ``module`` takes (``network_input``; default: prepared and standardized);
        ``logits``: compared without their shared offset.
        """
        network_input = network_input or (lambda x: self._standardize(self._prepare(x)))

        def make_batch():
            _, batch = next(iter(inputs.iter_batches(AUTO_CHECK_SAMPLES, device, 0)))
            return network_input(batch)

        precision = getattr(self, "precision", "auto")
        choice = choose_precision(precision, module, make_batch, device, centre=logits)
        self._precision_choice = choice
        self.precision_, self.precision_agreement_ = choice.name, choice.agreement

    # 0.2 renamed it: the attribute holds the preprocessor (``preprocess`` is the bool switch)
    @deprecated(
        "Attribute `preprocess_` was renamed `preprocessor_` in 0.2 and will be removed in 0.3."
    )
    @property
    def preprocess_(self):
        return self.preprocessor_

    def _backbone_name(self) -> str:
        return self.backbone if isinstance(self.backbone, str) else type(self.backbone).__name__

    def _fit_backbone(self, X, *, seed=None):
        """Validate X and build the backbone; returns ``(inputs, module)``.

        Sets ``input_shape_``, ``n_features_in_``, ``preprocessor_`` (None unless the
        backbone carries ``pretrained_cfg`` and ``preprocess=True``) and
        ``embedding_dim_``.
        """
        inputs = check_inputs(self, X, input_shape=self.input_shape, reset=True)
        with seeded_init(self._seed() if seed is None else seed):
            module = build_backbone(self.backbone, self.backbone_params, inputs.sample_shape)
        if not isinstance(self.backbone, (str, nn.Module)):
            module = copy.deepcopy(module)  # never move/eval the estimator's own module
        config = data_config(
            module, preprocess=self.preprocess, img_size=self.img_size, crop_pct=self.crop_pct
        )
        self.preprocessor_ = None if config is None else ImagePreprocessor.from_config(config)
        if self.preprocessor_ is not None:
            if not inputs.is_image:
                raise ValueError(
                    f"backbone {self._backbone_name()!r} is pretrained on images "
                    f"{config['input_size']} but X holds vectors of shape {inputs.sample_shape};"
                    " pass images, or input_shape=(C, H, W) for flattened images"
                )
            check_unit_range(inputs, self._backbone_name())
            if inputs.sources is not None:  # image files: decoded at the backbone's size
                inputs = inputs.with_loader(self.preprocessor_)
                self.input_shape_ = inputs.sample_shape
                self.n_features_in_ = int(math.prod(inputs.sample_shape))
        self.embedding_dim_ = check_backbone_accepts(
            module,
            self._standardize(self._prepare(inputs.example())),
            backbone_name=self._backbone_name(),
        )
        return inputs, module

    def _transform_inputs(self, X):
        """Validate X against what ``fit`` saw (image files decoded as in fit)."""
        inputs = check_inputs(
            self,
            X,
            input_shape=self.input_shape,
            reset=False,
            loader=getattr(self, "preprocessor_", None),
        )
        if getattr(self, "preprocessor_", None) is not None:
            check_unit_range(inputs, self._backbone_name())
        return inputs

    def _prepare(self, x):
        """[0, 1] images at the data's resolution -> at the backbone's (pretrained only)."""
        return x if self.preprocessor_ is None else self.preprocessor_.prepare(x)

    def _standardize(self, x):
        return x if self.preprocessor_ is None else self.preprocessor_.standardize(x)

    def _resolve_policy(self, *, allow_none=False):
        """The policy callable (or None where allowed), its parameters applied."""
        params = dict(self.policy_params or {})
        if self.policy is None and allow_none:
            if params:
                raise ValueError(f"policy_params={params!r} was given but policy=None")
            return None
        if isinstance(self.policy, str):
            try:
                return create_augmentation_policy(self.policy, **params)
            except (ValueError, TypeError) as exc:
                given = f" with policy_params={params!r}" if params else ""
                raise ValueError(f"policy={self.policy!r}{given}: {exc}") from exc
        if params:
            raise ValueError(
                f"policy_params={params!r} can only be used when policy is a registered "
                f"name, not a {type(self.policy).__name__}"
            )
        return self.policy

    def _check_policy_keeps_shape(self, policy, example):
        """Run ``policy`` once on a prepared example; it must return the same shape."""
        try:
            out = policy(example.clone(), make_generator(0, example.device))
        except Exception as exc:
            raise ValueError(
                f"policy={self.policy!r} cannot make views of inputs of shape "
                f"{tuple(example.shape[1:])}: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(out, torch.Tensor) or out.shape != example.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"policy={self.policy!r} must return a tensor of the input's shape "
                f"{tuple(example.shape)}, got {got}"
            )
        return out

    def _embed(self, module, inputs, device, desc, verbose=None):
        """Plain embeddings of ``inputs`` through the preprocessing; float32 numpy."""
        dtype, channels_last = self._inference_settings(module, device)
        return embed_inputs(
            module,
            inputs,
            batch_size=self.batch_size,
            device=device,
            verbose=self.verbose if verbose is None else verbose,
            desc=desc,
            num_workers=self.num_workers,
            preprocessor=self.preprocessor_,
            dtype=dtype,
            channels_last=channels_last,
        )

    def _export_backbone(self, module):
        """A CPU, eval-mode copy of ``module`` usable as another estimator's backbone.

        It declares ``embedding_dim``, and its ``pretrained_cfg`` is the
        preprocessing it was used with here (img_size / crop_pct applied), or
        None when it was fed raw pixels, so the next estimator feeds it alike.
        """
        module = copy.deepcopy(module).cpu().eval()
        module.embedding_dim = self.embedding_dim_
        cfg = getattr(module, "pretrained_cfg", None)
        if cfg:
            config = self.preprocessor_.config if self.preprocessor_ is not None else None
            module.pretrained_cfg = None if config is None else {**cfg, **config}
        return module


def module_on(module: nn.Module, device) -> nn.Module:
    """``module`` itself when it is on ``device``, else a copy moved there.

    Used at transform time, so predicting never moves a fitted estimator's module.
    """
    device = torch.device(device)
    tensor = next(iter(module.state_dict().values()), None)
    if tensor is None or _same_device(tensor.device, device):
        return module
    return copy.deepcopy(module).to(device)


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index or 0) == (b.index or 0)
