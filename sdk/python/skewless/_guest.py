"""The component side: the ``transformer`` export that componentize-py binds.

It turns the host's columnar batch into Python lists, calls the declared function, and
turns its lists back into columns, checking each output's length and types. Anything
the function raises becomes a ``computation`` error naming the transform and the
exception, so the host reports it for that call and carries on.
"""

import struct
import traceback

import wit_world
from componentize_py_types import Err
from wit_world.exports import transformer as wit

from . import BOOL, FLOAT32_LIST, FLOAT64, INT64, TIMESTAMP, UTF8, registered

_WIT_DTYPE = {
    BOOL: wit.Dtype.BOOLEAN,
    INT64: wit.Dtype.INT64,
    FLOAT64: wit.Dtype.FLOAT64,
    UTF8: wit.Dtype.UTF8,
    TIMESTAMP: wit.Dtype.TIMESTAMP,
    FLOAT32_LIST: wit.Dtype.FLOAT32_LIST,
}
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1


class OutputError(Exception):
    """An output the function returned does not match its declaration."""


def _valid_rows(validity, rows):
    if validity is None:
        return None
    return [(validity[i >> 3] >> (i & 7)) & 1 == 1 for i in range(rows)]


def _values(column, rows):
    data = column.data
    if isinstance(data, wit.ColumnData_Boolean):
        packed = data.value
        return [(packed[i >> 3] >> (i & 7)) & 1 == 1 for i in range(rows)]
    if isinstance(data, (wit.ColumnData_Int64, wit.ColumnData_Float64, wit.ColumnData_Timestamp)):
        return list(data.value)
    if isinstance(data, wit.ColumnData_Utf8):
        offsets, raw = data.value.offsets, data.value.bytes
        return [raw[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(rows)]
    if isinstance(data, wit.ColumnData_Float32List):
        offsets, items = data.value.offsets, data.value.values
        return [list(items[offsets[i] : offsets[i + 1]]) for i in range(rows)]
    raise TypeError(f"input column {column.name!r}: unsupported data {type(data).__name__}")


def _input_lists(batch):
    columns = []
    for column in batch.columns:
        values = _values(column, batch.rows)
        valid = _valid_rows(column.validity, batch.rows)
        if valid is not None:
            values = [v if ok else None for v, ok in zip(values, valid)]
        columns.append(values)
    return columns


def _check(ok, spec, row, value, expected):
    if not ok:
        raise OutputError(
            f"output {spec.name!r} ({spec.dtype}) row {row}: expected {expected}, "
            f"got {type(value).__name__} {value!r}"
        )


def _float64(spec, row, v):
    if isinstance(v, float):
        return v
    _check(isinstance(v, int) and not isinstance(v, bool), spec, row, v, "a float")
    f = float(v)
    _check(int(f) == v, spec, row, v, "a float (this int is not exactly representable)")
    return f


def _int64(spec, row, v):
    _check(isinstance(v, int) and not isinstance(v, bool), spec, row, v, "an int")
    _check(_I64_MIN <= v <= _I64_MAX, spec, row, v, "an int within 64 bits")
    return v


def _bool(spec, row, v):
    _check(isinstance(v, bool), spec, row, v, "a bool")
    return v


def _utf8(spec, row, v):
    _check(isinstance(v, str), spec, row, v, "a str")
    return v.encode("utf-8")


def _float32_list(spec, row, v):
    _check(isinstance(v, (list, tuple)), spec, row, v, "a list of floats")
    out = []
    for item in v:
        f = _float64(spec, row, item)
        # Round to binary32 as the host will read it (also refuses what overflows it).
        try:
            out.append(struct.unpack("<f", struct.pack("<f", f))[0])
        except OverflowError:
            raise OutputError(
                f"output {spec.name!r} ({spec.dtype}) row {row}: {f!r} does not fit a float32"
            ) from None
    return out


_CONVERT = {
    BOOL: (_bool, False),
    INT64: (_int64, 0),
    TIMESTAMP: (_int64, 0),
    FLOAT64: (_float64, 0.0),
    UTF8: (_utf8, b""),
    FLOAT32_LIST: (_float32_list, []),
}


def _output_column(spec, values, rows):
    if not isinstance(values, (list, tuple)):
        raise OutputError(
            f"output {spec.name!r}: expected a list of {rows} values, got {type(values).__name__}"
        )
    if len(values) != rows:
        raise OutputError(f"output {spec.name!r}: {len(values)} values for {rows} input rows")
    convert, placeholder = _CONVERT[spec.dtype]
    validity = None
    converted = []
    for row, v in enumerate(values):
        if v is None:
            if not spec.nullable:
                raise OutputError(f"output {spec.name!r} row {row}: None in a non-nullable column")
            if validity is None:
                validity = bytearray(b"\xff" * ((rows + 7) // 8))
            validity[row >> 3] &= ~(1 << (row & 7)) & 0xFF
            converted.append(placeholder)
        else:
            converted.append(convert(spec, row, v))
    if spec.dtype == BOOL:
        packed = bytearray((rows + 7) // 8)
        for row, v in enumerate(converted):
            if v:
                packed[row >> 3] |= 1 << (row & 7)
        data = wit.ColumnData_Boolean(bytes(packed))
    elif spec.dtype == INT64:
        data = wit.ColumnData_Int64(converted)
    elif spec.dtype == TIMESTAMP:
        data = wit.ColumnData_Timestamp(converted)
    elif spec.dtype == FLOAT64:
        data = wit.ColumnData_Float64(converted)
    elif spec.dtype == UTF8:
        offsets = [0]
        for b in converted:
            offsets.append(offsets[-1] + len(b))
        data = wit.ColumnData_Utf8(wit.Utf8Data(offsets, b"".join(converted)))
    else:
        offsets = [0]
        for items in converted:
            offsets.append(offsets[-1] + len(items))
        flat = [x for items in converted for x in items]
        data = wit.ColumnData_Float32List(wit.Float32ListData(offsets, flat))
    return wit.Column(spec.name, None if validity is None else bytes(validity), data)


def _describe_error(spec, exc):
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if frames:
        last = frames[-1]
        where = f" (at {last.filename}:{last.lineno} in {last.name})"
    return f"Python transform {spec.name!r} raised {type(exc).__name__}: {exc}{where}"


class Transformer(wit_world.exports.Transformer):
    """The exported interface: ``describe`` and ``transform``."""

    def describe(self) -> wit.Signature:
        spec = registered()

        def specs(columns):
            return [wit.ColumnSpec(c.name, _WIT_DTYPE[c.dtype], c.nullable) for c in columns]

        return wit.Signature(specs(spec.inputs), specs(spec.outputs))

    def transform(self, input: wit.Batch) -> wit.Batch:
        spec = registered()
        rows = input.rows
        try:
            columns = _input_lists(input)
        except Exception as exc:
            raise Err(wit.TransformError_InvalidInput(_describe_error(spec, exc)))
        try:
            result = spec.func(*columns)
        except Exception as exc:
            raise Err(wit.TransformError_Computation(_describe_error(spec, exc)))
        if len(spec.outputs) == 1 and not isinstance(result, tuple):
            result = (result,)
        if not isinstance(result, (tuple, list)) or len(result) != len(spec.outputs):
            got = len(result) if isinstance(result, (tuple, list)) else type(result).__name__
            raise Err(
                wit.TransformError_Other(
                    f"Python transform {spec.name!r} returned {got} columns; "
                    f"it declares {len(spec.outputs)} outputs "
                    f"({', '.join(c.name for c in spec.outputs)})"
                )
            )
        try:
            out = [_output_column(c, v, rows) for c, v in zip(spec.outputs, result)]
        except OutputError as exc:
            raise Err(wit.TransformError_Other(f"Python transform {spec.name!r}: {exc}"))
        return wit.Batch(rows, out)
