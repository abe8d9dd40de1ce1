"""3x3 stride-1 convolution by Winograd's minimal filtering F(m x m, 3x3) (Lavin and Gray, "Fast
Algorithms for Convolutional Neural Networks", 2016), as matrix products, for output tiles of
side m = 2 or 4.

Each m x m block of outputs comes from the (m + 2) x (m + 2) input tile d around it:
y = A^T [U . (B^T d B)] A, with U = G g G^T the transform of the 3x3 kernel g. Over all tiles and
channels that is (m + 2)^2 matrix products (tiles x C) @ (C x O): 16/36 of a direct convolution's
multiplications for m = 2, 36/144 for m = 4. The transforms are sums of strided slices (no copy
along the channel axis), along the rows, then the columns. The gradients are the same kind of
products (custom VJP below): the output gradient goes through A's transpose, the input gradient
through B's (then summed over the overlapping tiles), the kernel's gradient is G^T dU G.

Why: on XLA's CPU backend the products run at the rate of its matrix multiply, and in bfloat16
at that of its bf16 matrix multiply (twice f32's on AVX512_BF16), which its convolutions do not
reach (docs/speed.md, "Winograd's convolutions"). F(4x4, 3x3)'s transforms have coefficients up to 5
in B^T, 8 in A^T and 1/24 in G, which magnify bfloat16's rounding (about 10x the RMS error of
XLA's bf16 convolution, against 2x for m = 2): ``dipjax.ops.conv`` offers m = 4 in float32 only.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
_F32 = jnp.float32
# Per output tile side m: input transform B^T ((m+2) x (m+2)), kernel transform G ((m+2) x 3),
# output transform A^T (m x (m+2)).
MATRICES = {
    2: {
        "BT": ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
        "G": ((1, 0, 0), (1 / 2, 1 / 2, 1 / 2), (1 / 2, -1 / 2, 1 / 2), (0, 0, 1)),
        "AT": ((1, 1, 1, 0), (0, 1, -1, -1)),
    },
    4: {
        "BT": (
            (4, 0, -5, 0, 1, 0),
            (0, -4, -4, 1, 1, 0),
            (0, 4, -4, -1, 1, 0),
            (0, -2, -1, 2, 1, 0),
            (0, 2, -1, -2, 1, 0),
            (0, 4, 0, -5, 0, 1),
        ),
        "G": (
            (1 / 4, 0, 0),
            (-1 / 6, -1 / 6, -1 / 6),
            (-1 / 6, 1 / 6, -1 / 6),
            (1 / 24, 1 / 12, 1 / 6),
            (1 / 24, -1 / 12, 1 / 6),
            (0, 0, 1),
        ),
        "AT": ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1)),
    },
}
TILES = tuple(MATRICES)
_DTYPES = {"f32": _F32, "bf16": jnp.bfloat16}
_transpose = lambda matrix: tuple(zip(*matrix))


def _sum(terms: list):
    return functools.reduce(lambda a, b: a + b, terms)


def _combine(matrix, xs: list) -> list:
    """[sum_j matrix[i][j] * xs[j] for each row i], skipping zeros and multiplying by no +-1."""
    scaled = lambda c, x: x if c == 1 else -x if c == -1 else c * x
    return [_sum([scaled(c, x) for c, x in zip(row, xs) if c]) for row in matrix]


def _pad(x: Array, axis: int, before: int, after: int) -> Array:
    return jnp.pad(x, [(before, after) if d == axis else (0, 0) for d in range(x.ndim)])


def _phases(x: Array, axis: int, tiles: int, size: int, stride: int) -> list:
    """x zero-padded at the end of ``axis`` -> [pixel a of each of ``tiles`` tiles of ``size``
    pixels and step ``stride`` along it, for a < size]: ``tiles`` long on that axis."""
    blocks = tiles - 1 + -(-size // stride)
    x = _pad(x, axis, 0, blocks * stride - x.shape[axis])
    x = x.reshape(x.shape[:axis] + (blocks, stride) + x.shape[axis + 1 :])

    def at(a):
        index = [slice(None)] * x.ndim
        index[axis], index[axis + 1] = slice(a // stride, a // stride + tiles), a % stride
        return x[tuple(index)]

    return [at(a) for a in range(size)]


def _interleave(parts: list, axis: int) -> Array:
    """parts[p] (..., t, ...) -> (..., k t, ...), k = len(parts): parts[p]'s entry i at k i + p."""
    shape = list(parts[0].shape)
    shape[axis] *= len(parts)
    return jnp.stack(parts, axis=axis + 1).reshape(shape)


def _fold(ts: list, axis: int, m: int) -> Array:
    """ts[a] (a < m + 2), pixel a of every (m + 2)-pixel tile of step m along ``axis`` (t tiles)
    -> their sum over the overlapping tiles, m (t + 1) long on that axis: ts[a]'s entry i at
    m i + a (a tile's last two pixels are the next one's first two)."""
    parts = [_pad(ts[p], axis, 0, 1) for p in range(m)]
    parts[:2] = [p + _pad(t, axis, 1, 0) for p, t in zip(parts, ts[m:])]
    return _interleave(parts, axis)


def _transform(matrix, x: Array, ti: int, tj: int, m: int) -> list:
    """out[k][l] (N, ti, tj, C) = sum_ab matrix[k][a] tile[a][b] matrix[l][b] over the tiles of
    x (N, H, W, C) of side len(matrix[0]) and step m: the rows first, then the columns."""
    size = len(matrix[0])
    rows = _combine(matrix, _phases(x, 1, ti, size, m))
    return [_combine(matrix, _phases(r, 2, tj, size, m)) for r in rows]


def _grid(a: list, b, contract: tuple) -> list:
    """[[a[k][j] . b[k][j] for j] for k] over square grids: float32 products of 2-D arrays
    contracting axes ``contract`` (a's, b's)."""
    dims = ((contract[:1], contract[1:]), ((), ()))
    dot = lambda p, q: jax.lax.dot_general(p, q, dims, preferred_element_type=_F32)
    return [[dot(p, q) for p, q in zip(ra, rb)] for ra, rb in zip(a, b)]


def _forward(x, kernel, dtype, m):
    """x (N, H, W, C), kernel (3, 3, C, O) -> (y (N, H - 2, W - 2, O) float32, residuals): the
    transformed tiles v[k][l] (N * ti * tj, C) and kernel u (m + 2, m + 2, C, O), in ``dtype``."""
    mats = MATRICES[m]
    n, h, w, c = x.shape
    ho, wo, o = h - 2, w - 2, kernel.shape[-1]
    ti, tj = -(-ho // m), -(-wo // m)
    v = _transform(mats["BT"], x.astype(_F32), ti, tj, m)
    v = [[t.reshape(-1, c).astype(dtype) for t in row] for row in v]
    g = np.asarray(mats["G"], np.float32)
    u = jnp.einsum("ka,abco,lb->klco", g, kernel.astype(_F32), g).astype(dtype)
    products = [[p.reshape(n, ti, tj, o) for p in row] for row in _grid(v, u, (1, 0))]
    rows = [_interleave(_combine(mats["AT"], row), 2) for row in products]
    return _interleave(_combine(mats["AT"], rows), 1)[:, :ho, :wo], (v, u)


def conv3x3(x: Array, kernel: Array, precision: str = "f32", tile: int = 2) -> Array:
    """Unpadded stride-1 cross-correlation of x (N, H, W, C) with kernel (3, 3, C, O), H, W >= 3:
    (N, H - 2, W - 2, O) float32, by output tiles of side ``tile`` (one of ``TILES``). For "bf16"
    ``precision`` x and kernel are rounded to bfloat16, and so are the transformed tiles, the
    transformed kernel and (for the gradients) the transformed cotangent, for products that
    accumulate in float32, and the gradients are rounded to bfloat16 before they return in x's
    and kernel's dtypes."""
    if tile not in MATRICES:
        raise ValueError(f"Winograd's output tile must be one of {TILES}, got {tile!r}")
    dtype = _DTYPES[precision]
    return _conv3x3(x.astype(dtype), kernel.astype(dtype), precision, tile)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv3x3(x: Array, kernel: Array, precision: str, m: int) -> Array:
    return _forward(x, kernel, _DTYPES[precision], m)[0]


def _fwd(x, kernel, precision, m):
    return _forward(x, kernel, _DTYPES[precision], m)


def _bwd(precision, m, residuals, dy):
    """dy (N, Ho, Wo, O) -> (dx (N, Ho + 2, Wo + 2, C), dkernel (3, 3, C, O)), in the precision's
    dtype."""
    dtype = _DTYPES[precision]  # x's and the kernel's too (conv3x3)
    mats = MATRICES[m]
    v, u = residuals
    n, ho, wo, o = dy.shape
    c = u.shape[2]
    ti, tj = -(-ho // m), -(-wo // m)
    dm = _transform(_transpose(mats["AT"]), dy.astype(_F32), ti, tj, m)
    dm = [[t.reshape(-1, o).astype(dtype) for t in row] for row in dm]
    dv = [[p.reshape(n, ti, tj, c) for p in row] for row in _grid(dm, u, (1, 1))]
    du = jnp.stack([jnp.stack(row) for row in _grid(v, dm, (0, 0))])
    # B's transform and the sum over overlapping tiles, the rows first: one fusion of all the
    # products folding both axes at once took 1.7x as long (XLA's loop emitter)
    b = _transpose(mats["BT"])
    rows = [_fold(_combine(b, [r[j] for r in dv]), 1, m) for j in range(m + 2)]
    dx = _fold(_combine(b, rows), 2, m)[:, : ho + 2, : wo + 2]
    g = np.asarray(mats["G"], np.float32)
    dk = jnp.einsum("ka,klco,lb->abco", g, du, g)
    return dx.astype(dtype), dk.astype(dtype)


_conv3x3.defvjp(_fwd, _bwd)
