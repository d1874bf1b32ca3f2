"""Centred finite differences and CS231n's relative error, for tests and notebooks.

    rel_error(a, b) = max |a - b| / max(floor, |a| + |b|)      (elementwise, then the max)

CS231n uses floor = 1e-8. With a larger floor, entries whose true value is ~0 are compared absolutely
(|a - b| / floor), so rounding noise on a zero gradient cannot fail correct code at random.
"""
import numpy as np


def rel_error(a, b, floor=1e-8):
    """Max elementwise relative error between two arrays of the same shape."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape. Expected {a.shape}, got {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(floor, np.abs(a) + np.abs(b))))


def numerical_gradient(f, x, eps=1e-6):
    """d f / d x by centred differences; f() -> float reads x, which is perturbed in place and restored."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise ValueError(f"x must be a float64 ndarray (perturbed in place). Expected float64 ndarray, got "
                         f"{type(x).__name__}{'' if not isinstance(x, np.ndarray) else ' of ' + str(x.dtype)}")
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + eps
        fp = f()
        x[ix] = old - eps
        fm = f()
        x[ix] = old
        grad[ix] = (fp - fm) / (2 * eps)
    return grad
