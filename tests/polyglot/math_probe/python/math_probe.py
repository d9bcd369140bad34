"""The math probe in Python: CPython's math module (see tests/guests/math-probe).

Where Python raises instead of returning an IEEE value (a domain error, an overflow),
the probe returns what C returns, so that only rounding differences remain."""

import math

from skewless import FLOAT64, transform
from skewless import ieee

_INF = float("inf")
_NAN = float("nan")


def _guard(f, overflow=_INF):
    def guarded(x):
        try:
            return f(x)
        except OverflowError:
            return math.copysign(overflow, 1.0) if overflow == _INF else overflow
        except ValueError:
            return _NAN
    return guarded


def _log10(x):
    if x == 0.0:
        return -_INF
    return _NAN if x < 0.0 else math.log10(x)


UNARY = [
    ("sqrt", ieee.sqrt),
    ("exp", ieee.exp),
    ("expm1", _guard(math.expm1)),
    ("log", ieee.log),
    ("log1p", ieee.log1p),
    ("log10", _log10),
    ("sin", _guard(math.sin)),
    ("cos", _guard(math.cos)),
    ("tan", _guard(math.tan)),
    ("atan", math.atan),
    ("tanh", math.tanh),
    ("cbrt", math.cbrt),
]


@transform(
    inputs={"x": FLOAT64, "y": FLOAT64},
    outputs=[(name, FLOAT64) for name, _ in UNARY] + [("pow", FLOAT64), ("atan2", FLOAT64)],
)
def math_probe(x, y):
    columns = []
    for _, f in UNARY:
        columns.append([None if v is None else f(v) for v in x])
    columns.append([None if a is None or b is None else ieee.pow(a, b) for a, b in zip(x, y)])
    columns.append([None if a is None or b is None else math.atan2(a, b) for a, b in zip(x, y)])
    return tuple(columns)
