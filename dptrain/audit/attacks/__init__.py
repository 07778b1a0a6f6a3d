"""Membership-inference attacks on arrays of per-record signals, in scikit-learn shape.

Every attack is configured in ``__init__``, then ``fit(signals, membership, groups=...)`` scores
each of the K models as the target with the models outside its group as references (``scores_``,
shape (K, n_records)), and ``score(target_signals)`` scores one new model against all K. Members
are the positive class: a higher score means "more likely member".

``groups=None`` makes every model its own group (leave-one-model-out). The audit draws training
sets in complementary pairs (model 2j on a random half of the patients, model 2j + 1 on the other
half, so every record is IN in exactly K/2 models). Leaving only the target out, a record then has
K/2 − 1 IN and K/2 OUT references when it is a member of the target and K/2 IN and K/2 − 1 OUT
when it is not: the reference set itself reveals membership, and with K = 4 or 8 attacks score
well above chance on signals that carry no membership information. ``groups = np.arange(K) // 2``
also drops the target's partner, so every record has K/2 − 1 references on each side.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np

from dptrain.audit.attacks.lira import LiRA
from dptrain.audit.attacks.loss import LossAttack
from dptrain.audit.attacks.rmia import RMIA
from dptrain.errors import ConfigError

__all__ = ["ATTACKS", "RMIA", "LiRA", "LossAttack", "MembershipAttack", "make_attack"]


class MembershipAttack(Protocol):
    """What the audit needs from an attack.

    Attributes:
        scores_: Leave-one-group-out membership scores, shape (K, n_records), set by ``fit``.
    """

    scores_: np.ndarray

    def fit(
        self,
        signals: np.ndarray,
        membership: np.ndarray,
        *,
        groups: np.ndarray | None = None,
    ) -> MembershipAttack:
        """Score every model against the models outside its group.

        Args:
            signals: φ of each record under each model, shape (K, n_records).
            membership: Training-set membership, shape (K, n_records).
            groups: Integer group label per model, shape (K,); target k's references are the
                models labelled other than ``groups[k]``. None: one group per model.

        Returns:
            The fitted attack.
        """
        ...

    def score(self, target_signals: np.ndarray) -> np.ndarray:
        """Score a new model's signals (n_records,) against all K fitted models."""
        ...


ATTACKS: Mapping[str, type] = MappingProxyType({"loss": LossAttack, "lira": LiRA, "rmia": RMIA})
"""Attack classes by configuration name."""


def make_attack(name: str, **options: Any) -> MembershipAttack:
    """Build an attack from its configuration name and options.

    Args:
        name: One of ``"loss"``, ``"lira"`` (options ``online``, ``fixed_variance``) or ``"rmia"``
            (options ``online``, ``offline_a``, ``gamma``, ``num_population``, ``seed``).
        **options: Keyword options of the attack's constructor.

    Returns:
        The configured, unfitted attack.

    Raises:
        ConfigError: On an unknown name, an unknown option, or an invalid option value.

    Example:
        >>> make_attack("lira", online=False)  # doctest: +ELLIPSIS
        <dptrain.audit.attacks.lira.LiRA object at ...>
        >>> make_attack("shokri")
        Traceback (most recent call last):
        ...
        dptrain.errors.ConfigError: unknown attack 'shokri'; known attacks: loss, lira, rmia
    """
    if name not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; known attacks: {', '.join(ATTACKS)}")
    cls = ATTACKS[name]
    known = list(inspect.signature(cls).parameters)
    unknown = sorted(set(options) - set(known))
    if unknown:
        allowed = ", ".join(known) if known else "none"
        raise ConfigError(f"{name} does not take option(s) {', '.join(unknown)}; known: {allowed}")
    return cls(**options)
