"""Reads an offline W&B run (``run-<id>.wandb``) without the network or the W&B service.

wandb >= 0.19 keeps an offline run's config, summary and group only in its transaction log (no
``files/wandb-summary.json`` or ``config.yaml`` until it is synced). The log is LevelDB-style:
a 7-byte header (``:W&B``, magic, version), then 32 KiB blocks of chunks, each with a 7-byte
header (CRC32, length, type: full/first/middle/last); each record is a `wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK_BYTES = 32 * 1024
CHUNK_HEADER_BYTES = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    group: str = ""
    name: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def _records(path: Path):
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    position, pending = 7, b""
    while position + CHUNK_HEADER_BYTES <= len(data):
        left_in_block = BLOCK_BYTES - position % BLOCK_BYTES
        if left_in_block < CHUNK_HEADER_BYTES:
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + CHUNK_HEADER_BYTES])
        position += CHUNK_HEADER_BYTES
        chunk = data[position : position + length]
        position += length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
        else:  # zero padding at the end of the file
            break


def read_offline_run(run_folder: Path) -> OfflineRun:
    """The group, name, config and (top-level) summary of an ``offline-run-*`` folder."""
    (log_file,) = Path(run_folder).glob("*.wandb")
    run = OfflineRun()
    for raw in _records(log_file):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.group, run.name = record.run.run_group, record.run.display_name
            for item in record.run.config.update:
                run.config[item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run.config[item.key] = json.loads(item.value_json)
        elif kind == "summary":
            for item in record.summary.update:
                key = item.key or "/".join(item.nested_key)
                run.summary[key] = json.loads(item.value_json)
    return run
