"""INT8 kernels behind one interface (see :mod:`eightbit.kernels.base`).

Backends: ``reference`` (integer-only, the definition of correct), ``fbgemm`` (torch's packed
ops, 7-bit activations) and ``avx2`` (our native kernel, exact 8-bit, the default when it builds).
This package is the only place that calls low-level INT8 operations.
"""

from eightbit.kernels import avx2, fbgemm, reference  # noqa: F401  (registers the backends)
from eightbit.kernels.base import (
    KernelError,
    PreparedLinear,
    QuantizedWeight,
    backend_names,
    bias_to_int32,
    embedding_gather,
    gelu,
    prepare_linear,
    resolve_backend,
)

__all__ = [
    "KernelError",
    "PreparedLinear",
    "QuantizedWeight",
    "backend_names",
    "bias_to_int32",
    "embedding_gather",
    "gelu",
    "prepare_linear",
    "resolve_backend",
]
