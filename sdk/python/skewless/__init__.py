"""Write Skewless feature transforms in Python.

A transform is a function over columns. Each input arrives as a plain Python list with
one item per row (``None`` at a null); the function returns one list per output, in
declared order (a tuple, or a single list when there is one output)::

    from skewless import FLOAT64, transform

    @transform(inputs={"amount": FLOAT64}, outputs={"amount_doubled": FLOAT64})
    def doubled(amount):
        return [None if a is None else a * 2.0 for a in amount]

``skewless build PATH`` turns the project into a WebAssembly component with
componentize-py; the host then runs it in backfills and at request time alike.

Python's float arithmetic is IEEE 754 binary64, as in every other guest language, but a
few operations raise where IEEE returns a value (``1.0 / 0.0``, ``math.log(0.0)``). The
functions in :mod:`skewless.ieee` return the IEEE value instead, so a Python transform
gives the same bits as its Rust or C twin.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

__all__ = [
    "BOOL",
    "INT64",
    "FLOAT64",
    "UTF8",
    "TIMESTAMP",
    "FLOAT32_LIST",
    "DTYPES",
    "Column",
    "TransformSpec",
    "transform",
    "registered",
]

#: A boolean column: ``bool`` values.
BOOL = "bool"
#: A signed 64-bit integer column: ``int`` values in [-2**63, 2**63).
INT64 = "int64"
#: An IEEE 754 binary64 column: ``float`` values (an ``int`` is converted exactly or refused).
FLOAT64 = "float64"
#: A UTF-8 string column: ``str`` values.
UTF8 = "utf8"
#: An instant as microseconds since the Unix epoch (UTC): ``int`` values.
TIMESTAMP = "timestamp"
#: A list of binary32 floats per row, such as an embedding: lists of ``float``.
FLOAT32_LIST = "float32_list"

DTYPES = (BOOL, INT64, FLOAT64, UTF8, TIMESTAMP, FLOAT32_LIST)


class Column:
    """One declared column: a name, a dtype and whether it may hold nulls."""

    __slots__ = ("name", "dtype", "nullable")

    def __init__(self, name: str, dtype: str, nullable: bool = True):
        if not isinstance(name, str) or not name:
            raise ValueError(f"a column name must be a non-empty string, not {name!r}")
        if dtype not in DTYPES:
            raise ValueError(
                f"column {name!r}: unknown dtype {dtype!r} (expected one of {', '.join(DTYPES)})"
            )
        self.name = name
        self.dtype = dtype
        self.nullable = bool(nullable)

    def __repr__(self) -> str:
        return f"Column({self.name!r}, {self.dtype!r}, nullable={self.nullable})"


ColumnsLike = Union[Mapping[str, str], Sequence[Union[Column, Tuple[str, str]]]]


def _columns(kind: str, spec: ColumnsLike) -> List[Column]:
    if isinstance(spec, Mapping):
        items = [Column(name, dtype) for name, dtype in spec.items()]
    else:
        items = [c if isinstance(c, Column) else Column(*c) for c in spec]
    if not items and kind == "outputs":
        raise ValueError("a transform must declare at least one output")
    seen = set()
    for c in items:
        if c.name in seen:
            raise ValueError(f"{kind}: column {c.name!r} is declared twice")
        seen.add(c.name)
    return items


class TransformSpec:
    """A decorated transform: its function, name and declared columns."""

    __slots__ = ("func", "name", "inputs", "outputs")

    def __init__(self, func: Callable, name: str, inputs: List[Column], outputs: List[Column]):
        self.func = func
        self.name = name
        self.inputs = inputs
        self.outputs = outputs

    def __call__(self, *columns):
        """Calls the function as written (handy in unit tests outside the component)."""
        return self.func(*columns)

    def __repr__(self) -> str:
        return f"TransformSpec({self.name!r}, inputs={self.inputs}, outputs={self.outputs})"


_REGISTERED: Optional[TransformSpec] = None


def transform(
    inputs: ColumnsLike, outputs: ColumnsLike, name: Optional[str] = None
) -> Callable[[Callable], TransformSpec]:
    """Declares ``func`` as this component's transform.

    ``inputs`` and ``outputs`` map column names to dtypes (``{"amount": FLOAT64}``), or
    are sequences of :class:`Column` (to declare a non-nullable column). The function
    receives the inputs as lists, positionally in declared order, and returns the
    outputs in declared order. A component holds exactly one transform.
    """

    def register(func: Callable) -> TransformSpec:
        global _REGISTERED
        spec = TransformSpec(
            func, name or func.__name__, _columns("inputs", inputs), _columns("outputs", outputs)
        )
        if _REGISTERED is not None and _REGISTERED.func is not func:
            raise ValueError(
                f"a component holds one transform: {_REGISTERED.name!r} is already declared, "
                f"so {spec.name!r} cannot be"
            )
        _REGISTERED = spec
        return spec

    return register


def registered() -> TransformSpec:
    """The transform declared with :func:`transform` (an error if there is none)."""
    if _REGISTERED is None:
        raise RuntimeError(
            "no transform is declared: decorate a function with @skewless.transform(...)"
        )
    return _REGISTERED
