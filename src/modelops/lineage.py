"""Lineage helpers: content hashes that identify data independently of where it lies."""

from __future__ import annotations

import hashlib

import pandas as pd


def content_hash(data: pd.DataFrame) -> str:
    """A sha256 of a frame's column names and values (the index is ignored)."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, data.columns)).encode())
    digest.update(pd.util.hash_pandas_object(data, index=False).to_numpy().tobytes())
    return digest.hexdigest()
