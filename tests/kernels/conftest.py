"""Fixtures shared by the kernel tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eightbit.kernels import native


@pytest.fixture(params=["avx2", "vnni", "amx"])
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test on the AVX2 microkernels, the VNNI ones and the AMX tile kernel (the last two
    skipped on CPUs without AVX512-VNNI or AMX-INT8), restoring the defaults afterwards."""
    if not native.is_available():
        pytest.skip("native kernel unavailable")
    if request.param != "avx2" and not native.vnni_available():
        pytest.skip("this CPU lacks AVX512-VNNI")
    if request.param == "amx" and not native.amx_available():
        pytest.skip("this CPU lacks AMX-INT8")
    previous_vnni = native.use_vnni(request.param != "avx2")
    previous_amx = native.use_amx(request.param == "amx") if native.amx_available() else False
    yield request.param
    native.use_vnni(previous_vnni)
    if native.amx_available():
        native.use_amx(previous_amx)
