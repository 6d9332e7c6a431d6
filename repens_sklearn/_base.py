"""What every torch estimator of the library shares.

Parameter constraints for the common parameters, backbone / policy / device
resolution, seeding through private generators, and the input pipeline.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch

from ._compat import Interval, StrOptions

# One definition per shared parameter, so every estimator accepts the same values.
DEVICE_CONSTRAINT = [StrOptions({"auto"}), str, torch.device, None]
COMMON_CONSTRAINTS = {
    "device": DEVICE_CONSTRAINT,
    "input_shape": [tuple, list, np.ndarray, None],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}
