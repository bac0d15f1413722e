"""Native AVX2 / AVX512-VNNI INT8 GEMM: a ctypes wrapper around ``csrc/*.c``, compiled on first use.

VNNI: on CPUs whose /proc/cpuinfo lists ``avx512f`` and ``avx512_vnni`` (e.g. AMD Zen 4, Intel
Ice Lake and later) every M > 1 GEMM runs ``vpdpbusd`` microkernels (``csrc/vnni.c``): u8 x s8
products summed four at a time into int32 without saturation, so exact for full 8-bit
activations at one instruction per 64 products, on the k-quad weight layout of the 7-bit path
below (packed on first use, kept next to the pair layout that M = 1 still reads). Their tile is
up to 6 rows x 4 panels (64 columns, 24 zmm accumulators): one 16-column panel per call was
bound by its loads (7 per 6 ``vpdpbusd``), not by the multiplies. Results are bit
for bit those of the AVX2 kernels; :func:`use_vnni` switches between them (tests run both),
``EIGHTBIT_VNNI=0`` turns VNNI off from the start.

AMX: on CPUs that also list ``amx_tile`` and ``amx_int8`` (Intel Sapphire Rapids and later) and
where Linux grants the tile state, GEMMs of 8 rows or more run ``tdpbusd`` tiles instead
(``csrc/amx.c``): 32 x 32 outputs over all of K per pass, 16384 products per instruction, on
the same k-quad weights; a K tail of under 64 is finished by the VNNI kernel. Same int32
accumulators, so the same results bit for bit; :func:`use_amx` switches, ``EIGHTBIT_AMX=0``
turns it off from the start. Measured here (Xeon, 1 thread): a 64 x 256 x 8000 output layer
2.0x faster than VNNI (445 vs 217 GMAC/s, the float epilogue now the larger part), 6-16 rows
about even.

AVX2: exact u8 x s8 -> int32 arithmetic without VNNI. ``vpmaddubsw`` (u8 x s8 -> int16
pairs) saturates for full 8-bit activations (255 * 127 * 2 > 32767), so activations are widened to
int16 with their zero point already subtracted (``a - za`` in [-255, 255]) and multiplied by int16
weights with ``vpmaddwd``, whose int32 pair sums are exact. Weights are packed once (still int8,
sign-extended on load) into panels of 16 columns with k-pairs interleaved; a 6x16 register-blocked
microkernel (12 ymm accumulators) feeds fused epilogues (int32 store, float scale + bias, or
gemmlowp fixed-point requantization, Jacob et al. 2018), so the output is written once. A single
row (M = 1, decoder steps) takes an exact ``vpmaddubsw`` GEMV instead (``csrc/gemv.c``: activations
shifted by 128 and the ``vpsignb`` trick keep every int16 pair sum below 2^15). Work is
cut into chunks (72 rows x up to 256 columns) that ``torch.get_num_threads()`` threads take from a
shared counter (``csrc/pool.c``: the caller works too and never waits for a worker that the OS has
not scheduled, which matters on cores shared with other processes); results do not depend on the
thread count.

7-bit path: when the caller guarantees activations in [0, 127] (``reduce_range`` qparams:
``seven_bit=True``, or ``qmax <= 127`` in :func:`linear_static_fp32`), ``vpmaddubsw`` cannot
saturate (2 * 127 * 128 < 2^15) and the kernel multiplies raw uint8 activations with weights
repacked in k-quads (``vpmaddubsw`` + ``vpmaddwd`` by ones + ``vpaddd``: 3 instructions per 32
products, as MLAS's U8S8 kernel), then subtracts ``za * colsum``: the same int32 accumulators and
outputs as the 8-bit path, about 1.3x faster. Values above 127 are not checked and give wrong sums.

Exactness: the int32 accumulators are exact for ``K <= 66000``; ``quantize_u8`` and the per-row
parameters of :func:`quantize_u8_per_row` equal :func:`eightbit.core.ops.quantize` and
:func:`eightbit.core.qparams.qparams_from_range` bit for bit; the requantized outputs equal
:func:`eightbit.core.fixedpoint.requantize` bit for bit. Float outputs are
``fl(fl(float(acc) * s) + bias)`` with ``s = fl(row_scale * col_scale)`` (no FMA contraction):
identical to ``acc.float() * s + bias`` computed in torch with the same ``s``.

Per-call overhead: :class:`LinearPlan` keeps a layer's constant arguments (packed weight,
scales, bias, static activation parameters) in one C struct, checked once, so that a module's
call converts 5 ctypes arguments instead of 15. :class:`Requantization` does the same for a
layer's requantization epilogue (multipliers, shifts, int32 bias, output clamp): checked once
where the backend computes it, so a requantized call does no tensor reductions (reading
``shift.min()`` / ``shift.max()`` on every call cost about 2.6 us). Its multipliers are never
negative, which the C requantization relies on (no INT32_MIN x INT32_MIN case); when no shift is
negative (every multiplier < 1, the usual case) it also skips the left-shift saturation.

The shared library is built with the system C compiler (``$CC`` or ``cc``) into
``$EIGHTBIT_CACHE_DIR`` (default ``~/.cache/eightbit``) under a name that hashes the sources and
flags, atomically (temporary file + ``os.replace``, under a file lock).
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import logging
import os
import platform
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "LinearPlan",
    "NativeKernelUnavailable",
    "PackedWeight",
    "Requantization",
    "amx_available",
    "amx_enabled",
    "argmax_rows",
    "attention_f32",
    "gelu_f32",
    "gemm_u8s8_int32",
    "is_available",
    "kernel_set",
    "library_path",
    "linear_dynamic",
    "linear_fp32_out",
    "linear_requant",
    "linear_static_fp32",
    "linear_static_requant",
    "pack_weight",
    "quantize_u8",
    "quantize_u8_per_row",
    "use_amx",
    "use_vnni",
    "vnni_available",
    "vnni_enabled",
]

log = logging.getLogger(__name__)

_CSRC = Path(__file__).with_name("csrc")
_FLAGS = ("-O3", "-mavx2", "-mfma", "-pthread", "-ffp-contract=off", "-shared", "-fPIC")
MAX_K = 66000  # |acc| <= K * 255 * 128 must fit in int32


class NativeKernelUnavailable(RuntimeError):
    """The native kernel cannot run here: no AVX2/FMA, no C compiler, or the build failed."""


# ------------------------------------------------------------------------------------ build


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _cache_dir() -> Path:
    env = os.environ.get("EIGHTBIT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "eightbit"


def _sources() -> list[Path]:
    return sorted(_CSRC.glob("*.c"))


def library_path() -> Path:
    """Where the shared library for the current sources, compiler and flags lives."""
    digest = hashlib.sha256()
    for path in sorted(_CSRC.glob("*.[ch]")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(" ".join((os.environ.get("CC", "cc"), *_FLAGS)).encode())
    return _cache_dir() / f"libeightbit_{digest.hexdigest()[:16]}.so"


def _build(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same file
        if target.exists():
            return
        fd, tmp = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=target.parent)
        os.close(fd)
        cmd = [
            os.environ.get("CC", "cc"),
            *_FLAGS,
            *map(str, _sources()),
            "-o",
            tmp,
            "-lm",
        ]
        log.info("building native INT8 kernel: %s", " ".join(cmd))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        except OSError as err:
            os.unlink(tmp)
            raise NativeKernelUnavailable(f"no C compiler ({cmd[0]}): {err}") from err
        if proc.returncode != 0:
            os.unlink(tmp)
            raise NativeKernelUnavailable(
                f"compiling the native INT8 kernel failed ({' '.join(cmd)}):\n{proc.stderr}"
            )
        os.replace(tmp, target)


# argument codes: p pointer, l int64, i int32 (C int), f float; GEMM entry points return a C int
# status (0, or -1 when their scratch memory could not be allocated)
_SIGNATURES: dict[str, str] = {
    "eb_pack_weight": "pllpp",
    "eb_quantize_u8": "plfiiip",
    "eb_quantize_u8_rows": "pllppp",
    "eb_pack_weight_quad": "pllp",
    "eb_gemm_u8_i32": "pillppilpi",
    "eb_linear_u8_f32": "pillppilpppi",
    "eb_linear_f32_static": "pfiiillppilpppi",
    "eb_linear_f32_dynamic": "pillppilpppppi",
    "eb_linear_u8_requant": "pillppilpppiiiipi",
    "eb_linear_f32_requant": "pfiiillppilpppiiiipi",
    "eb_set_vnni": "i",
    "eb_set_amx": "i",
    "eb_plan_static": "pplpi",
    "eb_plan_dynamic": "pplpi",
    "eb_argmax_rows": "pllp",
    "eb_plan_static_gelu": "pplpfiiii",
    "eb_plan_dynamic_gelu": "pplpi",
    "eb_plan_argmax": "piplppppi",
    "eb_gelu_f32": "pl",
    "eb_attention_f32": "ppllllfpi",
    "eb_add_layernorm": "ppllppfi",
    "eb_decode_attention": "pllplllplllplpllpllllllfi",
}
_CTYPES = {"p": ctypes.c_void_p, "l": ctypes.c_int64, "i": ctypes.c_int32, "f": ctypes.c_float}

_lock = threading.Lock()
_state: dict[str, object] = {}


def _load() -> ctypes.CDLL:
    lib = _state.get("lib")
    if lib is not None:
        return lib  # type: ignore[return-value]
    with _lock:
        if "error" in _state:
            raise NativeKernelUnavailable(str(_state["error"]))
        if "lib" not in _state:
            try:
                lib = _open()
            except NativeKernelUnavailable as err:
                _state["error"] = err
                raise
            vnni = vnni_available() and os.environ.get("EIGHTBIT_VNNI", "1") != "0"
            lib.eb_set_vnni(int(vnni))
            _state["vnni"] = vnni
            amx = vnni and amx_available() and os.environ.get("EIGHTBIT_AMX", "1") != "0"
            _state["amx"] = amx and lib.eb_set_amx(1) >= 0  # the OS may refuse the tile state
            _state["lib"] = lib
    return _state["lib"]  # type: ignore[return-value]


def _open() -> ctypes.CDLL:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        raise NativeKernelUnavailable(f"needs an x86-64 CPU, this is {platform.machine()}")
    missing = {"avx2", "fma"} - _cpu_flags()
    if missing:
        raise NativeKernelUnavailable(f"CPU lacks {', '.join(sorted(missing))} (/proc/cpuinfo)")
    if not _sources():
        raise NativeKernelUnavailable(f"the C sources are missing from {_CSRC} (package data)")
    path = library_path()
    if not path.exists():
        try:
            _build(path)
        except OSError as err:
            raise NativeKernelUnavailable(
                f"cannot build into {path.parent} ({err}); set EIGHTBIT_CACHE_DIR to a writable "
                "directory"
            ) from err
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as err:
        raise NativeKernelUnavailable(f"cannot load {path}: {err}") from err
    for name, codes in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes = [_CTYPES[c] for c in codes]
        status = name.startswith(
            ("eb_gemm", "eb_linear", "eb_set", "eb_plan", "eb_attention", "eb_decode")
        )
        fn.restype = ctypes.c_int if status else None
    return lib


def vnni_available() -> bool:
    """True when this CPU has AVX512-VNNI (``avx512f`` and ``avx512_vnni`` in /proc/cpuinfo): then
    the GEMM runs exact ``vpdpbusd`` kernels for 8-bit activations too."""
    return {"avx512f", "avx512_vnni"} <= _cpu_flags()


def vnni_enabled() -> bool:
    """True when GEMM calls run the VNNI kernels now (see :func:`use_vnni`)."""
    return is_available() and bool(_state.get("vnni"))


def use_vnni(enabled: bool) -> bool:
    """Run later GEMM calls on the VNNI kernels (``True``) or the AVX2 ones; returns the previous
    setting. The default is on where :func:`vnni_available`, unless ``EIGHTBIT_VNNI=0``. Results
    are identical either way; only speed differs. Not meant to be flipped while other threads call
    the kernels."""
    if enabled and not vnni_available():
        raise NativeKernelUnavailable("this CPU lacks avx512f/avx512_vnni (/proc/cpuinfo)")
    lib = _load()
    previous = bool(_state.get("vnni"))
    lib.eb_set_vnni(int(enabled))
    _state["vnni"] = bool(enabled)
    return previous


def amx_available() -> bool:
    """True when this CPU has AMX-INT8 (``amx_tile`` and ``amx_int8`` in /proc/cpuinfo) and
    AVX512-VNNI: then M >= 8 GEMMs run ``tdpbusd`` tiles (``csrc/amx.c``), exact as the others."""
    return {"amx_tile", "amx_int8"} <= _cpu_flags() and vnni_available()


def amx_enabled() -> bool:
    """True when GEMM calls run the AMX kernel now (see :func:`use_amx`); it needs VNNI on."""
    return is_available() and bool(_state.get("amx")) and bool(_state.get("vnni"))


def use_amx(enabled: bool) -> bool:
    """Run later GEMM calls of 8 rows or more on the AMX kernel (``True``) or not; returns the
    previous setting. The default is on where :func:`amx_available` and Linux grants the tile
    state, unless ``EIGHTBIT_AMX=0``. It takes effect while VNNI is on (:func:`use_vnni`).
    Results are identical either way; only speed differs. Not meant to be flipped while other
    threads call the kernels."""
    if enabled and not amx_available():
        raise NativeKernelUnavailable("this CPU lacks amx_tile/amx_int8 (/proc/cpuinfo)")
    lib = _load()
    previous = bool(_state.get("amx"))
    if lib.eb_set_amx(int(enabled)) < 0:
        raise NativeKernelUnavailable("Linux refused the AMX tile state (arch_prctl)")
    _state["amx"] = bool(enabled)
    return previous


def kernel_set() -> str:
    """The microkernels GEMM calls of several rows run now: ``"amx-int8"`` (8 rows or more;
    fewer take VNNI), ``"avx512-vnni"`` or ``"avx2"``; ``"unavailable"`` without the library."""
    if not is_available():
        return "unavailable"
    if amx_enabled():
        return "amx-int8"
    return "avx512-vnni" if vnni_enabled() else "avx2"


def is_available() -> bool:
    """True when the kernel is built (building it now if needed) and this CPU can run it."""
    try:
        _load()
    except NativeKernelUnavailable as err:
        if not _state.get("warned"):
            _state["warned"] = True
            log.warning("native INT8 kernel unavailable: %s", err)
        return False
    return True


# ------------------------------------------------------------------------------------ checks


def _bad(t: object, name: str, dtype: torch.dtype, ndim: int) -> ValueError:
    if not isinstance(t, Tensor):
        return ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != dtype or t.dim() != ndim or t.device.type != "cpu":
        return ValueError(
            f"{name} must be a {ndim}-d {dtype} CPU tensor, got {t.dim()}-d {t.dtype} on {t.device}"
        )
    return ValueError(f"{name} must be contiguous")


def _ptr(t: Tensor, name: str, dtype: torch.dtype, ndim: int) -> int:
    """``t.data_ptr()`` after checking dtype, rank, device and contiguity (the fast path is a
    handful of attribute reads: these checks run on every call)."""
    try:
        ok = t.dtype is dtype and t.ndim == ndim and t.is_cpu and t.is_contiguous()
    except AttributeError:
        ok = False
    if not ok:
        raise _bad(t, name, dtype, ndim)
    return t.data_ptr()


def _check(t: Tensor, name: str, dtype: torch.dtype, ndim: int) -> None:
    _ptr(t, name, dtype, ndim)


def _check_vec(t: Tensor | None, name: str, dtype: torch.dtype, n: int) -> int | None:
    if t is None:
        return None
    ptr = _ptr(t, name, dtype, 1)
    if t.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {tuple(t.shape)}")
    return ptr


def _check_zp(zp: int, name: str = "zero point") -> int:
    if not 0 <= zp <= 255:
        raise ValueError(f"{name} must be in [0, 255] for uint8 activations, got {zp}")
    return int(zp)


def _check_status(status: int) -> None:
    """The C entry points return non-zero only when they cannot allocate scratch memory."""
    if status:
        raise MemoryError("native INT8 kernel: cannot allocate scratch memory")


def _check_static(scale: float, zp: int, qmin: int, qmax: int) -> None:
    """Static activation parameters: positive scale, uint8 zero point and clamp."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    _check_zp(zp)
    if not 0 <= qmin <= qmax <= 255:
        raise ValueError(f"need 0 <= qmin <= qmax <= 255, got [{qmin}, {qmax}]")


# ------------------------------------------------------------------------------------ API


@dataclass(frozen=True)
class PackedWeight:
    """int8 weights (N, K) packed for the native kernel.

    ``data``: int8 panels ``[ceil(N/16)][ceil(K/2)][16][2]`` (zero padded), followed by the int32
    column sums ``sum_k w[n, k]`` padded to whole panels (the M = 1 path needs them);
    ``colsum``: a (N,) int32 view of those sums.

    The 7-bit path (activations known to be <= 127) needs a second copy in k-quads
    (``[ceil(N/16)][ceil(K/4)][16][4]``), packed on its first use by :meth:`quad_ptr` and kept:
    weights used only by the 8-bit path cost no extra memory.
    """

    data: Tensor
    colsum: Tensor
    n: int
    k: int
    ptr: int = field(init=False, repr=False)  # data.data_ptr(), read once
    quad: Tensor | None = field(init=False, repr=False, default=None)
    _quad_addr: int = field(init=False, repr=False, default=0)  # quad.data_ptr() once packed

    def __post_init__(self) -> None:
        object.__setattr__(self, "ptr", self.data.data_ptr())

    def quad_ptr(self) -> int:
        """Pointer to the k-quad layout of the 7-bit path and the VNNI kernels, packing it on
        first use."""
        if self._quad_addr:
            return self._quad_addr
        quad = self.quad
        if quad is None:
            with _quad_lock:
                quad = self.quad
                if quad is None:
                    size = (self.n + 15) // 16 * ((self.k + 3) // 4) * 64
                    buf = torch.empty(size + 64, dtype=torch.int8)
                    offset = -buf.data_ptr() % 64
                    quad = buf[offset : offset + size]
                    _load().eb_pack_weight_quad(self.ptr, self.n, self.k, quad.data_ptr())
                    object.__setattr__(self, "quad", quad)
                    object.__setattr__(self, "_quad_addr", quad.data_ptr())
        return quad.data_ptr()

    def _quad_or_null(self, seven_bit: bool) -> int | None:
        """The k-quad layout when the call reads it (7-bit path, or VNNI kernels), else NULL."""
        return self.quad_ptr() if seven_bit or _state.get("vnni") else None


_quad_lock = threading.Lock()


def pack_weight(w: Tensor) -> PackedWeight:
    """Pack int8 weights ``w`` (N, K) once.

    Every int8 value is exact for M > 1 and on the 7-bit path; the 8-bit M = 1 kernel needs
    weights in [-127, 127] (its sign trick overflows on -128), which the backend interface
    (:class:`eightbit.kernels.base.QuantizedWeight`) enforces.
    """
    _check(w, "weight", torch.int8, 2)
    n, k = w.shape
    if k > MAX_K:
        raise ValueError(f"in_features {k} > {MAX_K}: int32 accumulators could overflow")
    panels = (n + 15) // 16
    size = panels * ((k + 1) // 2) * 32  # a multiple of 32: the sums that follow stay aligned
    data = torch.empty(size + panels * 64 + 64, dtype=torch.int8)
    offset = -data.data_ptr() % 64  # 64-byte aligned panels inside an over-allocated buffer
    data = data[offset : offset + size + panels * 64]
    colsum = data[size:].view(torch.int32)[:n]
    _load().eb_pack_weight(w.data_ptr(), n, k, data.data_ptr(), colsum.data_ptr())
    return PackedWeight(data, colsum, n, k)


def _check_input(a: Tensor, name: str, dtype: torch.dtype, packed: PackedWeight) -> tuple[int, int]:
    """(rows of ``a``, its data pointer) after checking it against the packed weight."""
    ptr = _ptr(a, name, dtype, 2)
    m, k = a.shape
    if k != packed.k:
        if not isinstance(packed, PackedWeight):
            raise ValueError(f"packed must be a PackedWeight, got {type(packed).__name__}")
        raise ValueError(f"{name} has {k} columns, the weight expects K={packed.k}")
    return m, ptr


def gemm_u8s8_int32(
    a: Tensor, packed: PackedWeight, za: int = 0, seven_bit: bool = False
) -> Tensor:
    """int32 (M, N): ``sum_k (a[m, k] - za) * w[n, k]``; ``za=0`` gives the raw product.

    ``seven_bit=True``: the caller guarantees every ``a`` value is <= 127 (not checked; larger
    values give wrong sums); then the faster ``vpmaddubsw`` path runs, with identical results."""
    m, pa = _check_input(a, "a", torch.uint8, packed)
    out = torch.empty(m, packed.n, dtype=torch.int32)
    status = _load().eb_gemm_u8_i32(
        pa, _check_zp(za), m, packed.k, packed.ptr, packed._quad_or_null(seven_bit),
        int(seven_bit), packed.n, out.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    _check_status(status)
    return out


def linear_fp32_out(
    a_q: Tensor,
    za: int,
    packed: PackedWeight,
    out_scale: Tensor,
    bias: Tensor | None = None,
    seven_bit: bool = False,
) -> Tensor:
    """float32 (M, N): ``fl(fl(float(acc) * out_scale[n]) + bias[n])``.

    ``acc = sum_k (a_q - za) * w`` exactly; ``out_scale = a_scale * w_scale`` (N,) float32.
    ``seven_bit``: the caller guarantees ``a_q <= 127`` (as :func:`gemm_u8s8_int32`).
    """
    m, pa = _check_input(a_q, "a_q", torch.uint8, packed)
    n = packed.n
    s = _check_vec(out_scale, "out_scale", torch.float32, n)
    b = _check_vec(bias, "bias", torch.float32, n)
    out = torch.empty(m, n, dtype=torch.float32)
    status = _load().eb_linear_u8_f32(
        pa, _check_zp(za), m, packed.k, packed.ptr, packed._quad_or_null(seven_bit),
        int(seven_bit), n, s, b, out.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    _check_status(status)
    return out


def linear_static_fp32(
    x: Tensor,
    scale: float,
    zp: int,
    packed: PackedWeight,
    w_scale: Tensor,
    bias: Tensor | None = None,
    qmin: int = 0,
    qmax: int = 255,
) -> Tensor:
    """Fused static linear, float32 in and out: quantize ``x`` (M, K) with ``(scale, zp)`` and
    clamp to ``[qmin, qmax]`` as :func:`quantize_u8` does, INT8 GEMM, then
    ``fl(fl(float(acc) * fl(scale * w_scale[n])) + bias[n])``. The uint8 activations are never
    written to memory (8-bit path). ``qmax <= 127`` (reduce_range) selects the 7-bit path: the
    clamped activations are 7-bit, so ``vpmaddubsw`` cannot saturate; same results."""
    m, pa = _check_input(x, "x", torch.float32, packed)
    n = packed.n
    ws = _check_vec(w_scale, "w_scale", torch.float32, n)
    b = _check_vec(bias, "bias", torch.float32, n)
    _check_static(scale, zp, qmin, qmax)
    out = torch.empty(m, n, dtype=torch.float32)
    status = _load().eb_linear_f32_static(
        pa, scale, int(zp), qmin, qmax, m, packed.k, packed.ptr,
        packed._quad_or_null(qmax <= 127), int(qmax <= 127), n, ws, b,
        out.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    _check_status(status)
    return out


class Requantization:
    """A layer's requantization epilogue, checked and converted once (not on every call).

    ``out = clamp(out_zp + M[n] * (acc + bias_i32[n]), lo, hi)`` as ``out_dtype`` (uint8 or
    int8), ``M = m0 * 2^-31 * 2^-shift``: ``bias_i32`` (N,) int32 or None, ``m0`` (N,) int32 in
    ``[0, 2^31)`` (what :func:`eightbit.core.fixedpoint.quantize_multiplier` produces; never
    negative, so the kernel's doubling high multiply cannot overflow), ``shift`` (N,) int32 in
    [-31, 62]. The tensors are kept alive; the kernels read them through raw pointers.
    """

    def __init__(
        self,
        bias_i32: Tensor | None,
        m0: Tensor,
        shift: Tensor,
        out_zp: int,
        lo: int,
        hi: int,
        out_dtype: torch.dtype = torch.uint8,
    ) -> None:
        n = m0.shape[0] if isinstance(m0, Tensor) and m0.dim() == 1 else -1
        self.m0_ptr = _check_vec(m0, "m0", torch.int32, n)
        self.shift_ptr = _check_vec(shift, "shift", torch.int32, n)
        self.bias_ptr = _check_vec(bias_i32, "bias_i32", torch.int32, n)
        if n and (int(shift.min()) < -31 or int(shift.max()) > 62):
            raise ValueError("shift must be in [-31, 62]")
        if n and int(m0.min()) < 0:
            raise ValueError("m0 must be in [0, 2^31) (quantize_multiplier's range)")
        if out_dtype == torch.uint8:
            qmin, qmax, self.signed = 0, 255, 0
        elif out_dtype == torch.int8:
            qmin, qmax, self.signed = -128, 127, 1
        else:
            raise ValueError(f"out_dtype must be torch.uint8 or torch.int8, got {out_dtype}")
        if not qmin <= out_zp <= qmax or not qmin <= lo <= hi <= qmax:
            raise ValueError(
                f"need {qmin} <= lo <= hi <= {qmax} and out_zp in range, got lo={lo} hi={hi} "
                f"out_zp={out_zp}"
            )
        self.n, self.out_dtype = n, out_dtype
        self.out_zp, self.lo, self.hi = int(out_zp), int(lo), int(hi)
        self._tensors = (bias_i32, m0, shift)

    def check(self, packed: PackedWeight) -> None:
        """The per-call check: these constants belong to a layer of ``packed``'s width."""
        if self.n != packed.n:
            raise ValueError(f"requantization has {self.n} columns, the weight has N={packed.n}")


def linear_requant(
    a_q: Tensor,
    za: int,
    packed: PackedWeight,
    requant: Requantization,
    seven_bit: bool = False,
) -> Tensor:
    """INT8 in, INT8 out: ``clamp(out_zp + M[n] * (acc + bias_i32[n]), lo, hi)`` (``requant``).

    ``M`` is applied with gemmlowp's saturating rounding doubling high multiply and rounding
    right shift, bit-exact with :func:`eightbit.core.fixedpoint.requantize`.
    ``seven_bit``: the caller guarantees ``a_q <= 127`` (as :func:`gemm_u8s8_int32`).
    """
    m, pa = _check_input(a_q, "a_q", torch.uint8, packed)
    requant.check(packed)
    r = requant
    out = torch.empty(m, r.n, dtype=r.out_dtype)
    status = _load().eb_linear_u8_requant(
        pa, _check_zp(za), m, packed.k, packed.ptr, packed._quad_or_null(seven_bit),
        int(seven_bit), r.n, r.bias_ptr, r.m0_ptr, r.shift_ptr, r.out_zp, r.lo, r.hi, r.signed,
        out.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    _check_status(status)
    return out


def linear_static_requant(
    x: Tensor,
    scale: float,
    zp: int,
    qmin: int,
    qmax: int,
    packed: PackedWeight,
    requant: Requantization,
) -> Tensor:
    """Fused static linear, float32 in, INT8 out: quantize ``x`` (M, K) as
    :func:`linear_static_fp32` does (the uint8 activations never reach memory), then the
    requantization of :func:`linear_requant`; bit-exact with ``quantize_u8`` followed by it."""
    m, pa = _check_input(x, "x", torch.float32, packed)
    requant.check(packed)
    _check_static(scale, zp, qmin, qmax)
    r = requant
    out = torch.empty(m, r.n, dtype=r.out_dtype)
    status = _load().eb_linear_f32_requant(
        pa, scale, int(zp), qmin, qmax, m, packed.k, packed.ptr,
        packed._quad_or_null(qmax <= 127), int(qmax <= 127), r.n, r.bias_ptr, r.m0_ptr,
        r.shift_ptr, r.out_zp, r.lo, r.hi, r.signed, out.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    _check_status(status)
    return out


def argmax_rows(x: Tensor) -> Tensor:
    """``torch.argmax(x, -1)`` of a 2-d contiguous float32 ``x`` (first maximum, NaN counting
    as the largest), int64 (M,): one vectorized pass per row (``csrc/argmax.c``)."""
    ptr = _ptr(x, "x", torch.float32, 2)
    out = torch.empty(x.shape[0], dtype=torch.int64)
    _load().eb_argmax_rows(ptr, x.shape[0], x.shape[1], out.data_ptr())
    return out


def gelu_f32(x: Tensor) -> Tensor:
    """Exact (erf) GELU of float32 ``x`` (any shape), bit for bit
    :func:`eightbit.core.elementwise.gelu` (``csrc/gelu.c``); what the fused
    GELU epilogues of :class:`LinearPlan` compute. Returns a new tensor."""
    if not isinstance(x, Tensor) or x.dtype != torch.float32 or x.device.type != "cpu":
        raise ValueError("x must be a float32 CPU tensor")
    out = x.contiguous().clone()
    _load().eb_gelu_f32(out.data_ptr(), out.numel())
    return out


def attention_f32(
    qkv: Tensor, key_bias: Tensor | None, batch: int, heads: int, scale: float
) -> Tensor:
    """Fused self-attention, float32: ``softmax(q k^T * scale + key_bias) v`` per sequence and
    head (``csrc/attention.c``; needs AVX-512F, see :func:`attention_available`).

    ``qkv``: (batch * seq, 3 * heads * head_dim), each row the token's query, key and value side
    by side (a fused projection's output); ``key_bias``: (batch, seq) float32 added to the scores
    of each key (0, or -inf for padding), or None. Returns (batch * seq, heads * head_dim), the
    heads side by side. ``head_dim`` must be a multiple of 16, at most 128. Differs from torch's
    SDPA only by float rounding (another summation order)."""
    _check(qkv, "qkv", torch.float32, 2)
    rows, width3 = qkv.shape
    if batch <= 0 or rows % batch or width3 % (3 * heads):
        raise ValueError(f"qkv of shape {tuple(qkv.shape)} does not split into {batch} x {heads}")
    seq, head_dim = rows // batch, width3 // (3 * heads)
    if head_dim % 16 or head_dim > 128:
        raise ValueError(f"head_dim must be a multiple of 16, at most 128, got {head_dim}")
    if key_bias is not None:
        _check(key_bias, "key_bias", torch.float32, 2)
        if tuple(key_bias.shape) != (batch, seq):
            raise ValueError(
                f"key_bias must have shape ({batch}, {seq}), got {tuple(key_bias.shape)}"
            )
    if not attention_available():
        raise NativeKernelUnavailable("the fused attention needs AVX-512F")
    out = torch.empty(rows, heads * head_dim, dtype=torch.float32)
    status = _load().eb_attention_f32(
        qkv.data_ptr(), None if key_bias is None else key_bias.data_ptr(), batch, seq, heads,
        head_dim, scale, out.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    _check_status(status)
    return out


def add_layernorm_(h: Tensor, x: Tensor, norm: torch.nn.LayerNorm) -> Tensor:
    """``h <- norm(h + x)`` in place for (M, N) float32 ``h`` and ``x`` (the residual add and
    post-norm of a Transformer layer, ``csrc/layernorm.c``; AVX-512F, as :func:`attention_f32`);
    returns ``h``. Float rounding differs from torch's LayerNorm in the last bits."""
    m, n = h.shape if h.dim() == 2 else (0, 0)
    _check(h, "h", torch.float32, 2)
    _check(x, "x", torch.float32, 2)
    if tuple(x.shape) != (m, n) or tuple(norm.normalized_shape) != (n,):
        raise ValueError(
            f"h {tuple(h.shape)}, x {tuple(x.shape)} and the norm's shape "
            f"{tuple(norm.normalized_shape)} do not match"
        )
    weight = None if norm.weight is None else _check_vec(norm.weight, "weight", torch.float32, n)
    bias = None if norm.bias is None else _check_vec(norm.bias, "bias", torch.float32, n)
    if not attention_available():
        raise NativeKernelUnavailable("the fused LayerNorm needs AVX-512F")
    _load().eb_add_layernorm(
        h.data_ptr(), x.data_ptr(), m, n, weight, bias, norm.eps, torch.get_num_threads()
    )
    return h


def attention_available() -> bool:
    """Whether :func:`attention_f32` runs here: the kernel is built and the VNNI kernels are on
    (AVX-512 CPUs; ``use_vnni(False)`` turns the fused attention off too)."""
    return vnni_enabled()


def quantize_u8(x: Tensor, scale: float, zp: int, qmin: int = 0, qmax: int = 255) -> Tensor:
    """uint8 ``clamp(round_half_even(x / scale) + zp, qmin, qmax)`` (float32 division), any
    shape; bit-exact with :func:`eightbit.core.ops.quantize`. NaN maps to ``qmin``."""
    if not isinstance(x, Tensor) or x.dtype != torch.float32 or x.device.type != "cpu":
        raise ValueError("x must be a float32 CPU tensor")
    if not x.is_contiguous():
        raise ValueError("x must be contiguous")
    _check_static(scale, zp, qmin, qmax)
    out = torch.empty(x.shape, dtype=torch.uint8)
    _load().eb_quantize_u8(
        x.data_ptr(), x.numel(), scale, _check_zp(zp), qmin, qmax, out.data_ptr()
    )
    return out


def quantize_u8_per_row(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Dynamic per-row quantization of float32 ``x`` (M, K).

    Each row's range ``[min(row.min(), 0), max(row.max(), 0)]`` gives the parameters of
    :func:`eightbit.core.qparams.qparams_from_range` (scale in float64, clamped to float32 eps,
    cast to float32; zero point from the float64 scale). Returns ``(uint8 (M, K), scale (M,)
    float32, zero_point (M,) int32)``.
    """
    _check(x, "x", torch.float32, 2)
    m, k = x.shape
    q = torch.empty(m, k, dtype=torch.uint8)
    scale = torch.empty(m, dtype=torch.float32)
    zp = torch.empty(m, dtype=torch.int32)
    _load().eb_quantize_u8_rows(x.data_ptr(), m, k, q.data_ptr(), scale.data_ptr(), zp.data_ptr())
    return q, scale, zp


def linear_dynamic(
    x: Tensor,
    packed: PackedWeight,
    w_scale: Tensor,
    bias: Tensor | None = None,
    per_row: bool = True,
    seven_bit: bool = False,
) -> Tensor:
    """Fused dynamic linear, float32 (M, K) -> float32 (M, N).

    Activation parameters are measured on ``x`` per row (``per_row``, as
    :func:`quantize_u8_per_row`) or per tensor, then
    ``out = fl(fl(float(acc) * fl(a_scale[m] * w_scale[n])) + bias[n])``.
    ``seven_bit``: quantize to 7 bits instead (the parameters of
    ``qparams_from_range(lo, hi, reduce_range=True)``, levels [0, 127], scale ``(hi - lo) / 127``)
    and take the faster 7-bit path; coarser activations, so results differ from the 8-bit mode.
    """
    m, pa = _check_input(x, "x", torch.float32, packed)
    n = packed.n
    ws = _check_vec(w_scale, "w_scale", torch.float32, n)
    b = _check_vec(bias, "bias", torch.float32, n)
    out = torch.empty(m, n, dtype=torch.float32)
    status = _load().eb_linear_f32_dynamic(
        pa, int(per_row), m, packed.k, packed.ptr, packed._quad_or_null(seven_bit),
        int(seven_bit), n, ws, b, out.data_ptr(), None, None, torch.get_num_threads(),
    )  # fmt: skip
    _check_status(status)
    return out


class _PlanStruct(ctypes.Structure):
    """Mirror of ``eb_plan`` in ``csrc/plan.c`` (same field order and types)."""

    _fields_ = [
        ("k", ctypes.c_int64),
        ("n", ctypes.c_int64),
        ("packed", ctypes.c_void_p),
        ("quad", ctypes.c_void_p),
        ("w_scale", ctypes.c_void_p),
        ("bias", ctypes.c_void_p),
        ("scale", ctypes.c_float),
        ("zp", ctypes.c_int32),
        ("qmin", ctypes.c_int32),
        ("qmax", ctypes.c_int32),
        ("seven", ctypes.c_int32),
        ("per_row", ctypes.c_int32),
    ]


class LinearPlan:
    """A layer's constant GEMM arguments, checked and converted once: the per-call path of a
    module (same results as :func:`linear_static_fp32` and :func:`linear_dynamic`).

    ``packed``, ``w_scale`` (N,) float32 and ``bias`` (N,) float32 or None are checked here and
    kept alive; per call only ``x`` is checked. The static activation parameters are checked when
    they differ from the previous call's. The C side reads them from one struct, so a call
    converts 5 ctypes arguments instead of 15 (about 1 us less per call).
    """

    def __init__(self, packed: PackedWeight, w_scale: Tensor, bias: Tensor | None = None) -> None:
        if not isinstance(packed, PackedWeight):
            raise ValueError(f"packed must be a PackedWeight, got {type(packed).__name__}")
        n = packed.n
        ws = _check_vec(w_scale, "w_scale", torch.float32, n)
        b = _check_vec(bias, "bias", torch.float32, n)
        self.packed = packed
        self._tensors = (w_scale, bias)  # the structs hold raw pointers into these
        lib = _load()
        self._run_static, self._run_dynamic = lib.eb_plan_static, lib.eb_plan_dynamic
        self._run_static_gelu = lib.eb_plan_static_gelu
        self._run_dynamic_gelu = lib.eb_plan_dynamic_gelu
        self._static = _PlanStruct(packed.k, n, packed.ptr, None, ws, b, 1.0, 0, 0, 255, 0, 0)
        self._dynamic = _PlanStruct(packed.k, n, packed.ptr, None, ws, b, 1.0, 0, 0, 255, 0, 0)
        self._static_ref = ctypes.byref(self._static)
        self._dynamic_ref = ctypes.byref(self._dynamic)
        self._static_key: tuple[object, ...] | None = None
        self._dynamic_key: tuple[object, ...] | None = None

    def static_fp32(
        self, x: Tensor, scale: float, zp: int, qmin: int = 0, qmax: int = 255
    ) -> Tensor:
        """:func:`linear_static_fp32` on this plan's weight, scales and bias."""
        self._set_static(scale, zp, qmin, qmax)
        return self._run(self._run_static, self._static_ref, x)

    def _set_static(self, scale: float, zp: int, qmin: int, qmax: int) -> None:
        key = (scale, zp, qmin, qmax, _state.get("vnni"))
        if key != self._static_key:
            _check_static(scale, zp, qmin, qmax)
            c = self._static
            c.scale, c.zp, c.qmin, c.qmax = float(scale), int(zp), int(qmin), int(qmax)
            c.seven = int(qmax <= 127)
            c.quad = self.packed._quad_or_null(qmax <= 127)
            self._static_key = key

    def dynamic(self, x: Tensor, per_row: bool = True, seven_bit: bool = False) -> Tensor:
        """:func:`linear_dynamic` on this plan's weight, scales and bias."""
        self._set_dynamic(per_row, seven_bit)
        return self._run(self._run_dynamic, self._dynamic_ref, x)

    def _set_dynamic(self, per_row: bool, seven_bit: bool) -> None:
        key = (per_row, seven_bit, _state.get("vnni"))
        if key != self._dynamic_key:
            c = self._dynamic
            c.per_row, c.seven = int(per_row), int(seven_bit)
            c.quad = self.packed._quad_or_null(seven_bit)
            self._dynamic_key = key

    def static_gelu(
        self,
        x: Tensor,
        scale: float,
        zp: int,
        qmin: int = 0,
        qmax: int = 255,
        out_qparams: tuple[float, int, int, int] | None = None,
    ) -> Tensor:
        """:meth:`static_fp32`, then :func:`gelu_f32` in the epilogue; with ``out_qparams``
        ``(scale, zero point, qmin, qmax)`` the GELU output is quantized as :func:`quantize_u8`
        does and returned as uint8 (the fp32 values never reach memory)."""
        self._set_static(scale, zp, qmin, qmax)
        m, px = _check_input(x, "x", torch.float32, self.packed)
        if out_qparams is None:
            out = torch.empty(m, self.packed.n, dtype=torch.float32)
            q_scale, q_zp, q_lo, q_hi = 0.0, 0, 0, 255
        else:
            q_scale, q_zp, q_lo, q_hi = out_qparams
            _check_static(q_scale, q_zp, q_lo, q_hi)
            out = torch.empty(m, self.packed.n, dtype=torch.uint8)
        _check_status(
            self._run_static_gelu(
                self._static_ref, px, m, out.data_ptr(), q_scale, q_zp, q_lo, q_hi,
                torch.get_num_threads(),
            )
        )  # fmt: skip
        return out

    def dynamic_gelu(self, x: Tensor, per_row: bool = True, seven_bit: bool = False) -> Tensor:
        """:meth:`dynamic`, then :func:`gelu_f32` in the epilogue."""
        self._set_dynamic(per_row, seven_bit)
        return self._run(self._run_dynamic_gelu, self._dynamic_ref, x)

    def static_argmax(
        self,
        x: Tensor,
        scale: float,
        zp: int,
        qmin: int = 0,
        qmax: int = 255,
        skip: Tensor | None = None,
        bias_after: Tensor | None = None,
    ) -> Tensor:
        """``argmax`` over the columns of :meth:`static_fp32`'s output, int64 (M,), without
        writing that output: see :meth:`dynamic_argmax`."""
        self._set_static(scale, zp, qmin, qmax)
        return self._run_argmax(0, self._static_ref, x, skip, bias_after)

    def dynamic_argmax(
        self,
        x: Tensor,
        per_row: bool = True,
        seven_bit: bool = False,
        skip: Tensor | None = None,
        bias_after: Tensor | None = None,
    ) -> Tensor:
        """``argmax`` over the columns of :meth:`dynamic`'s output, int64 (M,): the first
        maximum, a NaN counting as the largest (``torch.argmax``), the columns where ``skip``
        (bool (N,), or None) is true counting as -inf (as filling them with -inf first), after
        adding ``bias_after`` (float32 (N,), or None: a logits bias added to the output). Each
        tile's values are those :meth:`dynamic` writes, kept in registers: greedy decoding's
        output layer never writes its (M, N) logits nor reads them back."""
        self._set_dynamic(per_row, seven_bit)
        return self._run_argmax(1, self._dynamic_ref, x, skip, bias_after)

    def _run_argmax(
        self,
        dynamic: int,
        ref: object,
        x: Tensor,
        skip: Tensor | None,
        bias_after: Tensor | None,
    ) -> Tensor:
        m, px = _check_input(x, "x", torch.float32, self.packed)
        n = self.packed.n
        if n == 0:
            raise ValueError("argmax over zero output columns is undefined (the weight has N=0)")
        skip_ptr = None if skip is None else _ptr(skip, "skip", torch.bool, 1)
        after_ptr = None if bias_after is None else _ptr(bias_after, "bias_after", torch.float32, 1)
        for name, t in (("skip", skip), ("bias_after", bias_after)):
            if t is not None and t.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {tuple(t.shape)}")
        best = torch.empty(m, (n + 15) // 16, 2, dtype=torch.int32)  # eb_best per row and panel
        out = torch.empty(m, dtype=torch.int64)
        _check_status(
            _load().eb_plan_argmax(
                ref, dynamic, px, m, skip_ptr, after_ptr, best.data_ptr(), out.data_ptr(),
                torch.get_num_threads(),
            )
        )  # fmt: skip
        return out

    def _run(self, fn: ctypes._CFuncPtr, ref: object, x: Tensor) -> Tensor:
        m, px = _check_input(x, "x", torch.float32, self.packed)
        out = torch.empty(m, self.packed.n, dtype=torch.float32)
        _check_status(fn(ref, px, m, out.data_ptr(), torch.get_num_threads()))
        return out
