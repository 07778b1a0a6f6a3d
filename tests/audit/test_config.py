"""Audit config: LiRA's variance choice and the new statistics' settings."""

import pytest

from dptrain.audit.config import LIRA_FIXED_VARIANCE_BELOW, AuditConfig
from dptrain.errors import ConfigError


@pytest.mark.parametrize(
    ("setting", "small", "large"),
    [("auto", True, False), (True, True, True), ("false", False, False), ("True", True, True)],
)
def test_lira_variance_is_fixed_below_the_threshold_when_auto(setting, small, large):
    config = AuditConfig(lira_fixed_variance=setting)
    assert config.lira_uses_fixed_variance(LIRA_FIXED_VARIANCE_BELOW - 2) is small
    assert config.lira_uses_fixed_variance(LIRA_FIXED_VARIANCE_BELOW) is large


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lira_fixed_variance": "sometimes"}, "true, false or auto, got 'sometimes'"),
        ({"null_repeats": 0}, "null_repeats must be >= 1, got 0"),
        ({"fdr": 1.0}, r"fdr must be in \(0, 1\), got 1.0"),
    ],
)
def test_bad_settings_are_rejected_with_the_value(options, message):
    with pytest.raises(ConfigError, match=message):
        AuditConfig(**options)
