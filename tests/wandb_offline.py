"""Reads what an offline wandb run wrote (``wandb/offline-run-*/run-*.wandb``), for the tests.

The file is a LevelDB-style log of protobuf ``Record``s (wandb's ``datastore`` format: a 7-byte ``:W&B`` header,
32 KiB blocks, each chunk with a 7-byte header of checksum, length and type); wandb >= 0.20 no longer ships a Python
reader for it.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[Any]:
    """The protobuf records of one ``.wandb`` file, in order."""
    data = path.read_bytes()
    ident, _magic, _version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B", f"{path} is not a wandb run file"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            break
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def finished_records(path: Path, timeout: float = 30.0) -> list[Any]:
    """The records of a run file once its ``exit`` record is there: wandb's service writes the file after
    ``wandb.finish()`` returns."""
    deadline = time.monotonic() + timeout
    while True:
        found = list(records(path))
        if any(r.WhichOneof("record_type") == "exit" for r in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def read_run(run_dir: Path) -> dict[str, Any]:
    """``{"config": {key: value}, "history": [{key: value}, ...], "summary": {key: value}, "files": [...]}``."""
    (path,) = run_dir.glob("run-*.wandb")
    out: dict[str, Any] = {"config": {}, "history": [], "summary": {}, "files": []}
    for record in finished_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["config"].update({_key(i): json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            out["config"].update({_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:  # nested keys (an image's fields) are kept whole
                row.setdefault(item.nested_key[0] if item.nested_key else item.key, {})
                if len(item.nested_key) > 1:
                    row[item.nested_key[0]][item.nested_key[1]] = json.loads(item.value_json)
                else:
                    row[_key(item)] = json.loads(item.value_json)
            out["history"].append(row)
        elif kind == "summary":
            out["summary"].update({_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "files":
            out["files"].extend(f.path for f in record.files.files)
    return out


def offline_runs(save_dir: Path) -> list[Path]:
    """The offline run directories under ``save_dir/wandb``, oldest first."""
    return sorted((save_dir / "wandb").glob("offline-run-*"))
