"""Rows (tuples, as ``StoreWriter.put`` takes them) → polars frames of a table's schema.

The writer's cost per row is here: every value is a Python object that must be read once
and copied into a column. Two paths give the same frames:

- **Arrow** (tables whose columns are all text, float, int or time, e.g. ``quotes``): one
  ``pyarrow.array(rows, struct)`` call transposes and converts a chunk of tuples in C++, with
  no intermediate per-column tuples (``zip(*rows)`` alone cost as much as the conversion).
  Int and time columns must hold only ``int`` (or None) for Arrow's reading to stand: Arrow
  would truncate a float (``1.5`` → ``1``) where the reference path refuses it, so a column
  holding other types is converted again strictly by polars, per chunk. Anything Arrow
  refuses raises, and the caller redoes that chunk on the reference path, so a bad value is
  rejected with the same reason as before. One difference is known: Arrow takes ``bytes``
  holding UTF-8 in a text column (as that text) where the reference path rejects them.
- **Reference** (:func:`columns`): ``zip(*rows)`` and one strict ``pl.Series`` per column; also
  the only path for tables with JSON, UUID, boolean or date columns.

Measured on 10k ``quotes`` rows (min of 11, load 2.4): the Arrow path 4.4 ms in 1,024-row
chunks, the reference path 7.7 ms.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from operator import itemgetter
from typing import Any

import msgspec
import polars as pl
import pyarrow as pa

from kit.store.schema import TABLES, Table, frame_schema

_ARROW = {
    "text": pa.string_view(),  # polars takes string views without a copy
    "float": pa.float64(),
    "int": pa.int64(),
    "ts": pa.int64(),
}
# what the Arrow path can refuse: the chunk is then redone on the reference path
ARROW_ERRORS = (pa.ArrowException, TypeError, ValueError, OverflowError)
_PLAIN_INT = frozenset((int, type(None)))  # int values Arrow reads exactly (bool is not int)
# a worker converting or encoding under the GIL sleeps this long between slices: a real sleep
# hands the GIL over; after sleep(0) the worker takes it back before the waiting loop thread
# runs, which then waits out the 5 ms switch interval (p99 4.7 vs 1.1 ms measured)
HANDOFF_S = 50e-6


@dataclass(frozen=True)
class ArrowSpec:
    """How a table's tuples convert through Arrow: the struct type, and the int/time columns
    that polars re-reads strictly (by position)."""

    struct: pa.StructType
    strict: tuple[int, ...]


@cache
def arrow_spec(name: str) -> ArrowSpec | None:
    """The Arrow path for table ``name``, or None when one of its columns needs the reference
    path (JSON text, UUID, boolean, date)."""
    table = TABLES[name]
    if any(c.type not in _ARROW for c in table.columns):
        return None
    struct = pa.struct([(c.name, _ARROW[c.type]) for c in table.columns])
    strict = tuple(k for k, c in enumerate(table.columns) if c.type in ("int", "ts"))
    return ArrowSpec(struct, strict)


def to_struct(spec: ArrowSpec, rows: list[tuple[Any, ...]]) -> pa.StructArray:
    """One chunk through Arrow (raises one of ``ARROW_ERRORS`` on a value it refuses). Int and
    time columns holding only ``int`` and None are as Arrow read them (exact, or OverflowError);
    a column holding anything else (a float, a NumPy integer) is read again as the reference
    path reads it, so a float raises TypeError rather than being truncated. The check is one
    C-level pass per column, inside the chunk: the re-read of a whole batch in one call held
    the GIL against the event loop for 5-14 ms."""
    arr = pa.array(rows, type=spec.struct)
    fields: list[pa.Array] | None = None
    for k in spec.strict:
        if set(map(type, map(itemgetter(k), rows))) <= _PLAIN_INT:
            continue
        values = list(map(itemgetter(k), rows))
        exact = pl.Series("", values, dtype=pl.Int64, strict=True).to_arrow()
        fields = fields or arr.flatten()
        fields[k] = exact
    if fields is not None:
        arr = pa.StructArray.from_arrays(fields, fields=list(spec.struct))
    return arr


def from_structs(table: Table, spec: ArrowSpec, parts: list[pa.StructArray]) -> pl.DataFrame:
    """The frame of Arrow chunks ``parts`` (in order, from :func:`to_struct`), joined into one
    chunk, with time columns cast from int ns to the store's UTC microseconds. Joined because
    every later step pays per chunk and holds the GIL doing it: for 100k rows in 1,024-row
    chunks, the frame, its checks and its export to the database took 11.4 ms under the GIL,
    against 1.0 ms on one chunk; the join itself (1.5 ms) runs without the GIL."""
    whole = pa.concat_arrays(parts) if len(parts) > 1 else parts[0]
    frame = pl.from_arrow(pa.Table.from_struct_array(whole), rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    fixed = [_ts(frame[c.name]) for k in spec.strict if (c := table.columns[k]).type == "ts"]
    return frame.with_columns(fixed) if fixed else frame


def columns(table: Table, rows: list[tuple[Any, ...]]) -> pl.DataFrame:
    """The reference path: strict column-wise conversion, a value of the wrong type raises."""
    schema = frame_schema(table)
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(table.columns)
    data = {}
    for c, values in zip(table.columns, cols, strict=True):
        if c.type == "ts":
            data[c.name] = _ts(pl.Series(c.name, values, dtype=pl.Int64, strict=True))
        elif c.type == "json":
            data[c.name] = pl.Series(c.name, [_json(v) for v in values], dtype=pl.String)
        else:
            data[c.name] = pl.Series(c.name, values, dtype=schema[c.name], strict=True)
    return pl.DataFrame(data)


def check(table: Table, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """NaN in an optional number becomes NULL; NaN, infinity or NULL in a required column
    rejects the row. Returns the rows kept and those rejected (None: none)."""
    optional = [pl.col(c.name).fill_nan(None) for c in table.columns
                if c.type == "float" and c.nullable]  # fmt: skip
    if optional:
        frame = frame.with_columns(optional)
    required = [c for c in table.columns if not c.nullable]
    if all(c.type != "float" and not frame[c.name].null_count() for c in required):
        return frame, None  # the usual case, and a null count is O(1): no mask to build
    bad = None
    for c in required:
        col = pl.col(c.name)
        bad = _or(bad, col.is_null())
        if c.type == "float":
            bad = _or(bad, col.is_nan() | col.is_infinite())
    if bad is None:
        return frame, None
    mask = frame.select(bad.fill_null(True).alias("bad"))["bad"]
    if not mask.any():
        return frame, None
    return frame.filter(~mask), frame.filter(mask)


def _or(a: pl.Expr | None, b: pl.Expr) -> pl.Expr:
    return b if a is None else a | b


def _ts(ns: pl.Series) -> pl.Series:
    """Int ns since the epoch → the store's UTC microseconds."""
    return ns.cast(pl.Datetime("ns", "UTC")).dt.cast_time_unit("us")


def _plain(obj: Any) -> Any:
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def _json(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return msgspec.json.encode(value, enc_hook=_plain).decode()
