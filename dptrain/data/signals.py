"""Fixed, per-record signal preprocessing for ECG loaders: band-pass filtering and resampling.

Both are data-independent (no statistic is fitted on any record), so they are applied once when
a data set is loaded, before any split, and cost no privacy. Per-lead standardisation, which *is*
fitted on data, stays with the cohort's `Standardize` and is fitted on each training split only.
Filters come from scipy (a zero-phase Butterworth band-pass, ``butter`` + ``sosfiltfilt``, and
polyphase resampling, ``resample_poly``); nothing here is a hand-rolled filter.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy.signal import butter, resample_poly, sosfiltfilt

from dptrain.errors import ConfigError, DataError


def check_signal_options(
    *, resample_hz: float, bandpass_hz: list[float], filter_order: int
) -> None:
    """Validates the signal options of a data config (``data.resample_hz`` etc.).

    Example:
        >>> check_signal_options(resample_hz=0, bandpass_hz=[0.5, 40.0], filter_order=2)
    """
    if resample_hz < 0:
        raise ConfigError(f"data.resample_hz must be >= 0 (0 keeps the rate), got {resample_hz}")
    if bandpass_hz and (len(bandpass_hz) != 2 or not 0 <= bandpass_hz[0] < bandpass_hz[1]):
        raise ConfigError(
            "data.bandpass_hz must be [] (no filter) or [low, high] with 0 <= low < high, got "
            f"{list(bandpass_hz)}"
        )
    if filter_order < 1:
        raise ConfigError(f"data.filter_order must be >= 1, got {filter_order}")


def bandpass(
    signals: np.ndarray, *, rate_hz: float, band_hz: list[float], order: int
) -> np.ndarray:
    """Zero-phase Butterworth band-pass (or high-/low-pass where an edge is 0 / Nyquist).

    Args:
        signals: ``(..., samples)`` float, filtered along the last axis.
        rate_hz: Sampling rate.
        band_hz: ``[low, high]`` cut-offs in Hz; ``low = 0`` gives a low-pass.
        order: Butterworth order (the effective order doubles: forward and backward pass).

    Returns:
        The filtered signals, float32, same shape.

    Raises:
        DataError: If ``high`` is not below the Nyquist frequency ``rate_hz / 2``.

    Example:
        >>> rate = 100.0
        >>> time = np.arange(1000) / rate
        >>> drift_and_beat = np.sin(2 * np.pi * 0.05 * time) + np.sin(2 * np.pi * 10 * time)
        >>> filtered = bandpass(drift_and_beat[None], rate_hz=rate, band_hz=[0.5, 40], order=2)
        >>> bool(np.abs(filtered[0, 200:800] - np.sin(2 * np.pi * 10 * time[200:800])).max() < 0.05)
        True
    """
    low, high = band_hz
    nyquist = rate_hz / 2
    if high >= nyquist:
        raise DataError(
            f"data.bandpass_hz={list(band_hz)}: the upper edge must be below the Nyquist "
            f"frequency {nyquist:g} Hz of {rate_hz:g} Hz signals; lower it (e.g. to "
            f"{0.8 * nyquist:g})"
        )
    if low > 0:
        sos = butter(order, [low, high], btype="bandpass", fs=rate_hz, output="sos")
    else:
        sos = butter(order, high, btype="lowpass", fs=rate_hz, output="sos")
    return sosfiltfilt(sos, signals, axis=-1).astype(np.float32)


def resample(signals: np.ndarray, *, from_hz: float, to_hz: float) -> np.ndarray:
    """Polyphase resampling along the last axis (anti-aliasing filter included).

    Args:
        signals: ``(..., samples)`` float.
        from_hz: Current rate.
        to_hz: Target rate.

    Returns:
        ``(..., round(samples · to_hz / from_hz))`` float32; the input when the rates are equal.

    Example:
        >>> resample(np.ones((2, 360)), from_hz=360, to_hz=125).shape
        (2, 125)
    """
    if to_hz == from_hz:
        return signals.astype(np.float32, copy=False)
    ratio = Fraction(to_hz / from_hz).limit_denominator(1000)
    return resample_poly(signals, ratio.numerator, ratio.denominator, axis=-1).astype(np.float32)


def describe(*, rate_hz: float, resample_hz: float, bandpass_hz: list[float], order: int) -> str:
    """One sentence for the cohort's notes saying what was applied.

    Example:
        >>> describe(rate_hz=360, resample_hz=180, bandpass_hz=[0.5, 40], order=2)
        'Signals were band-passed 0.5-40 Hz (Butterworth order 2, zero-phase) at 360 Hz, then resampled to 180 Hz, once at load (fixed per-record filters, no privacy cost); per-lead standardisation is fitted on each training split.'
    """  # noqa: E501
    steps = []
    if bandpass_hz:
        steps.append(
            f"band-passed {bandpass_hz[0]:g}-{bandpass_hz[1]:g} Hz (Butterworth order {order}, "
            f"zero-phase) at {rate_hz:g} Hz"
        )
    if resample_hz and resample_hz != rate_hz:
        steps.append(f"resampled to {resample_hz:g} Hz")
    done = ", then ".join(steps) if steps else f"kept as recorded at {rate_hz:g} Hz"
    return (
        f"Signals were {done}, once at load (fixed per-record filters, no privacy cost); "
        "per-lead standardisation is fitted on each training split."
    )


def preprocess(
    signals: np.ndarray,
    *,
    rate_hz: float,
    resample_hz: float,
    bandpass_hz: list[float],
    order: int,
) -> tuple[np.ndarray, float]:
    """Band-pass at the recorded rate, then resample: the order an ECG pipeline uses.

    Returns:
        The processed ``(..., samples')`` float32 signals and their rate.

    Example:
        >>> out, rate = preprocess(np.zeros((12, 1000)), rate_hz=100, resample_hz=50,
        ...     bandpass_hz=[0.5, 20], order=2)
        >>> out.shape, rate
        ((12, 500), 50)
    """
    if bandpass_hz:
        target = resample_hz or rate_hz
        if bandpass_hz[1] >= target / 2:
            raise DataError(
                f"data.bandpass_hz={list(bandpass_hz)}: the upper edge must be below the "
                f"Nyquist frequency {target / 2:g} Hz of the {target:g} Hz output; lower it"
            )
        signals = bandpass(signals, rate_hz=rate_hz, band_hz=bandpass_hz, order=order)
    if resample_hz:
        return resample(signals, from_hz=rate_hz, to_hz=resample_hz), resample_hz
    return signals.astype(np.float32, copy=False), rate_hz
