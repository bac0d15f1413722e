"""Fixtures shared by the kernel tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eightbit.kernels import native


@pytest.fixture(params=["avx2", "vnni"])
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once on the AVX2 microkernels and once on the VNNI ones (skipped on CPUs
    without AVX512-VNNI), restoring the default afterwards."""
    if not native.is_available():
        pytest.skip("native kernel unavailable")
    if request.param == "vnni" and not native.vnni_available():
        pytest.skip("this CPU lacks AVX512-VNNI")
    previous = native.use_vnni(request.param == "vnni")
    yield request.param
    native.use_vnni(previous)
