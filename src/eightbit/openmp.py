"""The OpenMP wait policy of processes that run eightbit's kernels next to torch's own threads.

torch runs its elementwise ops, attention and FP32 GEMMs on libgomp threads, which by default
spin for milliseconds after every parallel region before they sleep. eightbit's INT8 GEMMs run
on their own pool (``kernels/csrc/pool.c``) on the same cores, so in an INT8 model, where torch
ops and INT8 GEMMs alternate, the spinning threads take cycles from almost every GEMM (about
half the CPU time of a BERT-base forward on two threads went to spinning).
``OMP_WAIT_POLICY=PASSIVE`` makes idle OpenMP threads sleep at once; waking them costs
microseconds per torch op.

libgomp reads the policy once, when torch loads, so :func:`prefer_passive_wait` runs when this
module is imported (the first thing ``import eightbit`` does): it sets the policy only if torch
is not loaded yet and the user chose none (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``).
"""

from __future__ import annotations

import os
import sys

POLICY_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def prefer_passive_wait() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` where it can still take effect and the user has not
    chosen a policy; returns whether it was set."""
    if "torch" in sys.modules or any(name in os.environ for name in POLICY_VARIABLES):
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


prefer_passive_wait()
