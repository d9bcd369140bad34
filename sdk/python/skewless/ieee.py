"""IEEE 754 arithmetic where Python raises.

Python computes ``+ - * /`` and ``math.sqrt`` on binary64 with correct rounding, like
every guest language, but refuses some inputs that IEEE 754 (and Rust, C and
JavaScript) answer with a value: ``x / 0.0`` raises ``ZeroDivisionError``,
``math.log(0.0)`` and ``math.log1p(-1.0)`` raise ``ValueError``, ``math.exp(1000.0)``
raises ``OverflowError``. These functions return the IEEE value instead (``inf``,
``-inf`` or NaN), so a Python transform produces the same bits as its twin in another
language. Where they call the math library (log, exp, pow), the component's libm is
wasi-libc's, the one Rust and C guests link too.
"""

import math

__all__ = ["div", "sqrt", "log", "log1p", "exp", "pow", "fmax", "fmin"]

_INF = float("inf")
_NAN = float("nan")


def div(a: float, b: float) -> float:
    """``a / b`` with IEEE division by zero: ``±inf``, or NaN for ``0 / 0``."""
    if b == 0.0:
        if a != a or a == 0.0:
            return _NAN
        negative = (math.copysign(1.0, a) < 0) != (math.copysign(1.0, b) < 0)
        return -_INF if negative else _INF
    return a / b


def sqrt(x: float) -> float:
    """Square root; NaN for a negative ``x`` (``-0.0`` stays ``-0.0``)."""
    if x < 0.0:
        return _NAN
    return math.sqrt(x)


def log(x: float) -> float:
    """Natural logarithm; ``-inf`` at ``±0``, NaN below zero."""
    if x == 0.0:
        return -_INF
    if x < 0.0:
        return _NAN
    return math.log(x)


def log1p(x: float) -> float:
    """``ln(1 + x)``, accurate near zero; ``-inf`` at ``-1``, NaN below it."""
    if x == -1.0:
        return -_INF
    if x < -1.0:
        return _NAN
    return math.log1p(x)


def exp(x: float) -> float:
    """``e ** x``; ``inf`` when the result overflows."""
    try:
        return math.exp(x)
    except OverflowError:
        return _INF


def pow(x: float, y: float) -> float:
    """``x ** y`` as C's ``pow``: ``±inf`` on overflow or for a zero base with a negative
    exponent (negative when the base is negative and the exponent an odd integer), NaN for
    a negative base with a non-integer exponent."""
    try:
        return math.pow(x, y)
    except (OverflowError, ValueError) as e:
        odd = math.isfinite(y) and y == math.floor(y) and math.fmod(y, 2.0) != 0.0
        if isinstance(e, OverflowError) or x == 0.0:
            # A pole or an overflow: infinite, negative for a negative base (or -0.0)
            # raised to an odd integer.
            return math.copysign(_INF, x) if odd else _INF
        return _NAN


def fmax(a: float, b: float) -> float:
    """The larger of ``a`` and ``b``, ignoring a NaN operand (as C's ``fmax`` and Rust's
    ``f64::max``; Python's ``max`` instead depends on argument order)."""
    if a != a:
        return b
    if b != b:
        return a
    if a == b:  # ±0: +0 is the larger, as in C
        return b if math.copysign(1.0, a) < 0 else a
    return a if a > b else b


def fmin(a: float, b: float) -> float:
    """The smaller of ``a`` and ``b``, ignoring a NaN operand (as C's ``fmin``)."""
    if a != a:
        return b
    if b != b:
        return a
    if a == b:  # ±0: -0 is the smaller, as in C
        return a if math.copysign(1.0, a) < 0 else b
    return a if a < b else b
