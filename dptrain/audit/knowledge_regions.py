"""Partial knowledge of images and signals: the parts an attacker knows, the rest the population's.

A table attacker knows named feature groups (`dptrain.audit.knowledge`); an image or an ECG has no
named columns, so a level names *regions* of the record instead:

==================  ==========================================================================
``center:0.5``      images: the central square of half the image's side
``lowres:7``        images: a 7×7 thumbnail (block means); the finer detail is unknown
``leads:I+II+V1``   signals: those leads, whole (names as the loader gives them, any case)
``window:0-2.5``    signals: every lead between 0 and 2.5 s from the record's start
``all``             the whole record: the audit's own attacker
==================  ==========================================================================

Parts join with ``+`` and their knowledge adds up (the union of the known regions), as feature
groups do for tables: ``leads:I+window:0-2.5`` knows lead I whole and every lead's first 2.5 s.
A value without a ``kind:`` takes the previous part's kind (``leads:I+II`` is
``leads:I+leads:II``), and ``,`` lists values too (``leads:I,II``; quote it on the command line).

The attacker's query keeps the known part of the patient's record and takes everything else from
the population reference, the pool's mean record (per pixel, per lead and sample): a ``lowres``
part keeps the record's block means and takes only the detail within each block from the
reference. The label is known. Specs are parsed once into typed parts (`parse_region_level`), so
a bad one fails with one line naming it before any training.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from dptrain.data.records import Records, chunks, read, record_shape, take
from dptrain.errors import ConfigError

FULL_RECORD = "all"
REFERENCE_CHUNK = 512
IMPUTATION = (
    "the known part of each image or signal kept, the rest replaced by the population reference, "
    "the pool's mean record taken per pixel, or per lead and sample; a lowres attacker keeps the "
    "record's block means and takes the detail within each block from the reference; the label "
    "is known"
)
# The lead order of PTB-XL's WFDB headers (``sig_name``), which the loader keeps.
TWELVE_LEADS = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
PART_SYNTAX = "center:<fraction>, lowres:<pixels>, leads:<name>[+<name>...], window:<s>-<s>"


@dataclass(frozen=True)
class RecordLayout:
    """What the axes of a non-tabular record mean, for the specs that name them.

    Attributes:
        channel_names: Names of a signal's leads in record order (empty: unnamed).
        sampling_hz: Samples per second along a signal's last axis (None: unknown).
    """

    channel_names: tuple[str, ...] = ()
    sampling_hz: float | None = None


def record_layout(data_config: object, records: Records) -> RecordLayout:
    """The lead names and sampling rate a signal data config implies (empty for other data).

    PTB-XL records keep the 12 leads of its headers in order, at ``data.resample_hz`` or else
    ``data.sampling_rate``; MIT-BIH beats keep ``data.leads``, at ``data.resample_hz`` or else
    the recorded rate, recovered from the beat window (``data.window_seconds``) and its samples.

    Args:
        data_config: The run's data config (`PTBXLDataConfig`, `MITBIHDataConfig`, ...).
        records: The loaded records, ``(n, leads, samples)`` for signals.

    Returns:
        The layout; an empty one for data without named leads.
    """
    from dptrain.data.mitbih import MITBIHDataConfig
    from dptrain.data.ptbxl import PTBXLDataConfig

    shape = record_shape(records)
    if isinstance(data_config, PTBXLDataConfig) and len(shape) == 2:
        names = TWELVE_LEADS if shape[0] == len(TWELVE_LEADS) else ()
        rate = data_config.resample_hz or float(data_config.sampling_rate)
        return RecordLayout(channel_names=names, sampling_hz=float(rate))
    if isinstance(data_config, MITBIHDataConfig) and len(shape) == 2:
        names = tuple(data_config.leads) if len(data_config.leads) == shape[0] else ()
        rate = data_config.resample_hz or round(shape[1] / sum(data_config.window_seconds))
        return RecordLayout(channel_names=names, sampling_hz=float(rate))
    return RecordLayout()


# ------------------------------------------------------------------------------------ the parts


@dataclass(frozen=True)
class CentreCrop:
    """The central square whose side is ``fraction`` of the image's (images)."""

    fraction: float
    kind: ClassVar[str] = "center"
    modality: ClassVar[str] = "images"

    @classmethod
    def parse(cls, level: str, value: str) -> CentreCrop:
        """The part of level ``level``; a one-line error if out of range."""
        fraction = _number(level, cls.kind, value, "a fraction of the image side, e.g. center:0.5")
        if not 0 < fraction <= 1:
            raise ConfigError(
                f"audit.knowledge: {level!r}: center:{value} must be a fraction in (0, 1] of the "
                "image side, e.g. center:0.5"
            )
        return cls(fraction)

    def known(self, shape: tuple[int, ...], layout: RecordLayout) -> np.ndarray:
        """``shape`` bool: the values of a record this part reveals exactly."""
        del layout
        mask = np.zeros(shape, dtype=bool)
        (top, bottom), (left, right) = (_centre(size, self.fraction) for size in shape[1:])
        mask[:, top:bottom, left:right] = True
        return mask

    def describe(self, shape: tuple[int, ...], layout: RecordLayout) -> str:
        """The part in words, for the report."""
        del layout
        (top, bottom), (left, right) = (_centre(size, self.fraction) for size in shape[1:])
        return f"centre {bottom - top}×{right - left} px"


@dataclass(frozen=True)
class Thumbnail:
    """A ``side × side`` thumbnail: block means of the image, its detail unknown (images)."""

    side: int
    kind: ClassVar[str] = "lowres"
    modality: ClassVar[str] = "images"

    @classmethod
    def parse(cls, level: str, value: str) -> Thumbnail:
        """The part of level ``level``; a one-line error if out of range."""
        side = _number(level, cls.kind, value, "the thumbnail side in pixels, e.g. lowres:7")
        if side != int(side) or side < 1:
            raise ConfigError(
                f"audit.knowledge: {level!r}: lowres:{value} must be a whole number of pixels "
                ">= 1, e.g. lowres:7"
            )
        return cls(int(side))

    def check(self, level: str, shape: tuple[int, ...]) -> None:
        """Refuses a part that does not fit records of ``shape``."""
        if self.side > min(shape[1:]):
            raise ConfigError(
                f"audit.knowledge: {level!r}: lowres:{self.side} is larger than the "
                f"{shape[1]}×{shape[2]} images; use a side below {min(shape[1:])}"
            )

    def known(self, shape: tuple[int, ...], layout: RecordLayout) -> np.ndarray:
        """``shape`` bool: the values of a record this part reveals exactly."""
        del layout
        return np.zeros(shape, dtype=bool)  # no pixel is known exactly, only block means

    def describe(self, shape: tuple[int, ...], layout: RecordLayout) -> str:
        """The part in words, for the report."""
        del shape, layout
        return f"{self.side}×{self.side} thumbnail"


@dataclass(frozen=True)
class Leads:
    """Whole leads of a signal, by name (signals)."""

    names: tuple[str, ...]
    kind: ClassVar[str] = "leads"
    modality: ClassVar[str] = "signals"

    @classmethod
    def parse(cls, level: str, value: str) -> Leads:
        """The part of level ``level``; a one-line error if out of range."""
        return cls((value,))

    def check(self, level: str, shape: tuple[int, ...], layout: RecordLayout) -> None:
        """Refuses a part that does not fit records of ``shape``."""
        known = [name.upper() for name in layout.channel_names]
        if not known:
            raise ConfigError(
                f"audit.knowledge: {level!r}: the {shape[0]} leads of these signals have no "
                "names (PTB-XL's 12 leads, or MIT-BIH's data.leads); use window:<s>-<s>"
            )
        for name in self.names:
            if name.upper() not in known:
                raise ConfigError(
                    f"audit.knowledge: {level!r}: unknown lead {name!r}; the leads are "
                    f"{', '.join(layout.channel_names)}"
                )

    def known(self, shape: tuple[int, ...], layout: RecordLayout) -> np.ndarray:
        """``shape`` bool: the values of a record this part reveals exactly."""
        mask = np.zeros(shape, dtype=bool)
        upper = [name.upper() for name in layout.channel_names]
        mask[[upper.index(name.upper()) for name in self.names]] = True
        return mask

    def describe(self, shape: tuple[int, ...], layout: RecordLayout) -> str:
        """The part in words, for the report."""
        del shape, layout
        return f"lead{'s' if len(self.names) > 1 else ''} {', '.join(self.names)}"


@dataclass(frozen=True)
class TimeWindow:
    """Every lead from ``start_seconds`` to ``end_seconds`` after the record's start (signals)."""

    start_seconds: float
    end_seconds: float
    kind: ClassVar[str] = "window"
    modality: ClassVar[str] = "signals"

    @classmethod
    def parse(cls, level: str, value: str) -> TimeWindow:
        """The part of level ``level``; a one-line error if out of range."""
        start, _, end = value.partition("-")
        try:
            window = cls(float(start), float(end))
        except ValueError:
            window = None
        if window is None or not 0 <= window.start_seconds < window.end_seconds:
            raise ConfigError(
                f"audit.knowledge: {level!r}: window:{value} must be <start>-<end> in seconds "
                "from the record's start, 0 <= start < end, e.g. window:0-2.5"
            )
        return window

    def check(self, level: str, shape: tuple[int, ...], layout: RecordLayout) -> None:
        """Refuses a part that does not fit records of ``shape``."""
        if layout.sampling_hz is None:
            raise ConfigError(
                f"audit.knowledge: {level!r}: the sampling rate of these signals is unknown, so "
                "a window in seconds cannot be placed; use leads:<name>"
            )
        duration = shape[1] / layout.sampling_hz
        if self.end_seconds > duration + 1e-9:
            raise ConfigError(
                f"audit.knowledge: {level!r}: window ends at {self.end_seconds:g} s but the "
                f"records last {duration:g} s; end the window by then"
            )

    def samples(self, layout: RecordLayout) -> slice:
        """The window as a slice of samples."""
        rate = float(layout.sampling_hz or 1.0)
        return slice(round(self.start_seconds * rate), round(self.end_seconds * rate))

    def known(self, shape: tuple[int, ...], layout: RecordLayout) -> np.ndarray:
        """``shape`` bool: the values of a record this part reveals exactly."""
        mask = np.zeros(shape, dtype=bool)
        mask[:, self.samples(layout)] = True
        return mask

    def describe(self, shape: tuple[int, ...], layout: RecordLayout) -> str:
        """The part in words, for the report."""
        del shape, layout
        return f"{self.start_seconds:g}–{self.end_seconds:g} s"


Part = CentreCrop | Thumbnail | Leads | TimeWindow
PARTS: dict[str, Callable[[str, str], Part]] = {
    part.kind: part.parse for part in (CentreCrop, Thumbnail, Leads, TimeWindow)
}


@dataclass(frozen=True)
class RegionLevel:
    """One parsed level: its parts, before they meet any data.

    Attributes:
        name: The level as configured.
        parts: The known parts (empty for ``all``); leads listed together form one `Leads`.
    """

    name: str
    parts: tuple[Part, ...]

    @property
    def full(self) -> bool:
        """Whether this is ``all``, the whole record."""
        return not self.parts


def parse_region_level(name: str) -> RegionLevel:
    """Parses one ``audit.knowledge`` entry for images or signals (see the module docstring).

    Raises:
        ConfigError: For an unknown kind, a value without one, or a value out of range.

    Example:
        >>> parse_region_level("leads:I+II+window:0-2.5").parts
        (Leads(names=('I', 'II')), TimeWindow(start_seconds=0.0, end_seconds=2.5))
    """
    if name == FULL_RECORD:
        return RegionLevel(name=name, parts=())
    parts: list[Part] = []
    kind = None
    for item in (value.strip() for chunk in name.split("+") for value in chunk.split(",")):
        if ":" in item:
            kind, _, item = item.partition(":")
            kind = kind.strip().lower()
        if kind not in PARTS:
            what = f"unknown kind {kind!r}" if kind else f"{item!r} names no kind"
            raise ConfigError(
                f"audit.knowledge: {name!r}: {what}; for images and signals a level is "
                f"{FULL_RECORD!r} or parts joined by + ({PART_SYNTAX})"
            )
        if not item:
            raise ConfigError(f"audit.knowledge: {name!r}: {kind}: needs a value ({PART_SYNTAX})")
        part = PARTS[kind](name, item)
        if isinstance(part, Leads) and parts and isinstance(parts[-1], Leads):
            part = Leads(parts.pop().names + part.names)
        parts.append(part)
    if sum(isinstance(part, Thumbnail) for part in parts) > 1:
        raise ConfigError(f"audit.knowledge: {name!r}: name at most one lowres:<pixels> per level")
    return RegionLevel(name=name, parts=tuple(parts))


def _number(level: str, kind: str, value: str, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"audit.knowledge: {level!r}: {kind}:{value} must be {what}") from None


def _centre(size: int, fraction: float) -> tuple[int, int]:
    """``[start, stop)`` of the central ``fraction`` of ``size`` pixels (at least one)."""
    kept = max(1, round(size * fraction))
    start = (size - kept) // 2
    return start, start + kept


# ------------------------------------------------------------------------------ the imputation


@dataclass(frozen=True, eq=False)
class RegionImputation:
    """Keeps the known region of every record and takes the rest from the population reference.

    Attributes:
        known: ``record_shape`` bool, the values the attacker knows exactly.
        reference: ``record_shape`` float32, the pool's mean record.
        thumbnail: Side of the thumbnail the attacker knows (block means), or None.
        dtype: The records' dtype, kept (uint8 images are rounded back to 8 bits).
        spec: The level's canonical parts, for the key.
    """

    known: np.ndarray
    reference: np.ndarray
    thumbnail: int | None
    dtype: np.dtype
    spec: str
    description: ClassVar[str] = IMPUTATION

    @property
    def imputed_inputs(self) -> int:
        """Values of a record the attacker does not know exactly."""
        return int(self.known.size - self.known.sum())

    def impute(self, records: np.ndarray) -> np.ndarray:
        """``(n, *record_shape)`` records as the attacker queries them, in their dtype."""
        values = np.asarray(records, dtype=np.float32)
        fill = np.broadcast_to(self.reference, values.shape)
        if self.thumbnail is not None:
            fill = fill + _block_means(values - self.reference, self.thumbnail)
        imputed = np.where(self.known, values, fill)
        if np.dtype(self.dtype) == np.uint8:
            return np.clip(np.rint(imputed), 0, 255).astype(np.uint8)
        return imputed.astype(self.dtype, copy=False)

    def queries(self, records: Records) -> Records:
        """The pool as the attacker queries it, imputed chunk by chunk as it is read."""
        return ImputedRecords(records, self)

    def key(self) -> list[str]:
        """What the signals of this imputation depend on, JSON-able."""
        digest = hashlib.sha256(np.packbits(self.known).tobytes())
        digest.update(np.ascontiguousarray(self.reference).tobytes())
        return [self.spec, digest.hexdigest()]


@dataclass(frozen=True, eq=False)
class ImputedRecords:
    """A lazy view of ``records`` as an imputation turns them into queries (`LazyRecords`)."""

    records: Records
    imputation: RegionImputation

    @property
    def shape(self) -> tuple[int, ...]:
        """``(n_records, *record_shape)``."""
        return tuple(self.records.shape)

    @property
    def dtype(self) -> np.dtype:
        """The records' dtype."""
        return self.records.dtype

    def __len__(self) -> int:
        return len(self.records)

    def subset(self, indices: np.ndarray) -> ImputedRecords:
        """The imputed view of the records at ``indices``."""
        return ImputedRecords(take(self.records, indices), self.imputation)

    def read(self, indices: np.ndarray) -> np.ndarray:
        """The records at ``indices``, imputed."""
        return self.imputation.impute(read(self.records, indices))


@dataclass(frozen=True, eq=False)
class ResolvedRegionLevel:
    """A level checked against the records: what it knows, and its imputation (None: ``all``)."""

    name: str
    known_parts: tuple[str, ...]
    imputation: RegionImputation | None


def region_levels(
    levels: Sequence[str], *, records: Records, layout: RecordLayout, data_name: str
) -> tuple[ResolvedRegionLevel, ...]:
    """Parses and checks every level against the records, and builds their imputations.

    Args:
        levels: ``audit.knowledge`` entries.
        records: The pool's raw records, images ``(n, C, H, W)`` or signals ``(n, leads,
            samples)``, in memory or lazy.
        layout: Lead names and sampling rate (`record_layout`).
        data_name: The data set's name, for messages.

    Returns:
        One resolved level per entry, in order.

    Raises:
        ConfigError: For a bad spec, or a part that does not fit these records.
    """
    shape = record_shape(records)
    modality = {3: "images", 2: "signals"}.get(len(shape))
    parsed = [parse_region_level(name) for name in levels]
    for level in parsed:
        for part in level.parts:
            if part.modality != modality:
                raise ConfigError(
                    f"audit.knowledge: {level.name!r}: {part.kind}: applies to "
                    f"{part.modality}; {data_name!r} has records of shape {shape} "
                    f"({_allowed(modality)})"
                )
            if isinstance(part, Thumbnail):
                part.check(level.name, shape)
            elif isinstance(part, Leads | TimeWindow):
                part.check(level.name, shape, layout)
    if all(level.full for level in parsed):
        return tuple(ResolvedRegionLevel(lv.name, ("whole record",), None) for lv in parsed)
    reference = population_reference(records)
    resolved = []
    for level in parsed:
        if level.full:
            resolved.append(ResolvedRegionLevel(level.name, ("whole record",), None))
            continue
        known = np.logical_or.reduce([part.known(shape, layout) for part in level.parts])
        thumbnail = next((p.side for p in level.parts if isinstance(p, Thumbnail)), None)
        imputation = RegionImputation(
            known=known,
            reference=reference,
            thumbnail=thumbnail,
            dtype=np.dtype(records.dtype),
            spec=repr(level.parts),
        )
        described = tuple(part.describe(shape, layout) for part in level.parts)
        resolved.append(ResolvedRegionLevel(level.name, described, imputation))
    return tuple(resolved)


def population_reference(records: Records) -> np.ndarray:
    """``record_shape`` float32: the pool's mean record, read in chunks."""
    total = np.zeros(record_shape(records), dtype=np.float64)
    for chunk in chunks(records, REFERENCE_CHUNK):
        total += chunk.astype(np.float64).sum(axis=0)
    return (total / max(len(records), 1)).astype(np.float32)


def _block_means(values: np.ndarray, side: int) -> np.ndarray:
    """``(n, C, H, W)`` each pixel replaced by the mean of its block of a ``side × side`` grid."""
    images = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    small = F.adaptive_avg_pool2d(images, side)
    return F.interpolate(small, size=tuple(values.shape[2:]), mode="nearest").numpy()


def _allowed(modality: str | None) -> str:
    if modality == "images":
        return "use center:<fraction> or lowres:<pixels>"
    if modality == "signals":
        return "use leads:<name> or window:<s>-<s>"
    return f"set audit.knowledge=[] or [{FULL_RECORD}]"
