"""Fixed, data-independent front ends (e.g. a scattering transform) applied once per data set.

A model config may offer ``frontend(input_shape)``: a transform with no trainable parameters and no
statistics fitted on data, such as Tramèr & Boneh's ScatterNet. Being fixed, it costs no privacy
and can be computed once for every record before the split: the deployed model and all K audit
models then train their heads on the same precomputed features, which makes an image audit minutes
instead of hours on a CPU.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from dptrain.data.cohort import Cohort
from dptrain.data.preprocessing import Standardize
from dptrain.data.records import chunks, record_shape
from dptrain.errors import ConfigError
from dptrain.models import model_frontend

log = logging.getLogger(__name__)
FRONTEND_CHUNK = 512


def apply_frontend(cohort: Cohort, model_factory: object) -> tuple[Cohort, str | None]:
    """The cohort with the model's fixed front end applied to every record, if it has one.

    The features it produces are standardised per channel on each training split (`Standardize`),
    like any other float input.

    Args:
        cohort: The whole cohort (before the split: the front end depends on no data).
        model_factory: The model config; its ``frontend(input_shape)`` is used when present.

    Returns:
        The (possibly) transformed cohort and the front end's name (None without one).

    Raises:
        ConfigError: If the data configures augmentation, which a precomputed front end would
            silently drop.
    """
    frontend = model_frontend(model_factory, record_shape(cohort.features))
    if frontend is None:
        return cohort, None
    if getattr(cohort.preprocessing, "augment", ()):
        raise ConfigError(
            f"data.augment cannot be combined with the {frontend.name} front end, which is "
            "computed once per data set; drop data.augment or pick an end-to-end model"
        )
    features = np.concatenate(
        [
            frontend.transform(chunk)  # a front end scales its own input (uint8 → [0, 1])
            for chunk in chunks(cohort.features, FRONTEND_CHUNK)
        ]
    ).astype(np.float32)
    log.info("%s front end: records %s -> %s", frontend.name, cohort.features.shape, features.shape)
    transformed = dataclasses.replace(
        cohort,
        features=features,
        preprocessing=Standardize(),
        notes=(
            *cohort.notes,
            f"Inputs go through a fixed {frontend.name} front end (no trainable parameters, no "
            "statistics fitted on data: it costs no privacy), computed once for all records.",
        ),
    )
    return transformed, frontend.name
