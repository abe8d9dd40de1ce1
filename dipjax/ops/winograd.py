"""3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray, "Fast
Algorithms for Convolutional Neural Networks", 2016), as matrix products.

Each 2x2 block of outputs comes from the 4x4 input tile d around it: y = A^T [U . (B^T d B)] A,
with U = G g G^T the 4x4 transform of the 3x3 kernel g. Over all tiles and channels that is 16
matrix products (tiles x C) @ (C x O), 16/36 of a direct convolution's multiplications, with
the transforms as sums and differences of strided slices (no copy along the channel axis). Its
gradients are the same kind of products (custom VJP below): the output gradient goes through A's
transpose, the input gradient through B's, the kernel's gradient is G^T dU G.

Why: on XLA's CPU backend the products run at the rate of its matrix multiply, and in bfloat16
at that of its bf16 matrix multiply (twice f32's on AVX512_BF16), which its convolutions do not
reach (README, "Winograd's convolutions").
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
_F32 = jnp.float32
# F(2, 3)'s matrices: input transform B^T (4x4), kernel transform G (4x3), output transform
# A^T (2x4)
BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
G = ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1))
AT = ((1, 1, 1, 0), (0, 1, -1, -1))
_B = tuple(zip(*BT))
_A = tuple(zip(*AT))
_G = np.asarray(G, np.float32)
_DTYPES = {"f32": _F32, "bf16": jnp.bfloat16}


def _sum(terms: list):
    return functools.reduce(lambda a, b: a + b, terms)


def _combine(matrix, xs: list) -> list:
    """[sum_j matrix[i][j] * xs[j] for each row i], skipping zeros and multiplying by no +-1."""
    scaled = lambda c, x: x if c == 1 else -x if c == -1 else c * x
    return [_sum([scaled(c, x) for c, x in zip(row, xs) if c]) for row in matrix]


def _both_axes(matrix, grid: list) -> list:
    """grid[i][j] (a nested list of arrays) -> out[k][l] = sum_ij M[k][i] grid[i][j] M[l][j]."""
    cols = [_combine(matrix, list(col)) for col in zip(*grid)]  # cols[j][k]
    return [_combine(matrix, list(row)) for row in zip(*cols)]


def _tiles(x: Array, ti: int, tj: int, size: int) -> list:
    """x (N, H, W, C) zero-padded at its bottom and right -> t[a][b] (N, ti, tj, C): the pixel
    (a, b) of every size x size tile of stride 2."""
    n, h, w, c = x.shape
    bi, bj = ti + (size - 1) // 2, tj + (size - 1) // 2
    x = jnp.pad(x, ((0, 0), (0, 2 * bi - h), (0, 2 * bj - w), (0, 0)))
    x = x.reshape(n, bi, 2, bj, 2, c)
    at = lambda a, b: x[:, a // 2 : a // 2 + ti, a % 2, b // 2 : b // 2 + tj, b % 2]
    return [[at(a, b) for b in range(size)] for a in range(size)]


def _interleave(blocks: list) -> Array:
    """blocks[p][q] (N, ti, tj, C) -> (N, 2 ti, 2 tj, C), blocks[p][q] at rows 2i+p, cols 2j+q."""
    n, ti, tj, c = blocks[0][0].shape
    y = jnp.stack([jnp.stack(row, axis=3) for row in blocks], axis=2)
    return y.reshape(n, 2 * ti, 2 * tj, c)


def _grid(a: list, b, contract: tuple) -> list:
    """[[a[k][j] . b[k][j] for j] for k] over 4x4 grids: float32 products of 2-D arrays
    contracting axes ``contract`` (a's, b's)."""
    dims = ((contract[:1], contract[1:]), ((), ()))
    dot = lambda p, q: jax.lax.dot_general(p, q, dims, preferred_element_type=_F32)
    return [[dot(a[k][j], b[k][j]) for j in range(4)] for k in range(4)]


def _forward(x, kernel, dtype):
    """x (N, H, W, C), kernel (3, 3, C, O) -> (y (N, H - 2, W - 2, O) float32, residuals): the
    transformed tiles v[k][l] (N * ti * tj, C) and kernel u (4, 4, C, O), both in ``dtype``."""
    n, h, w, c = x.shape
    ho, wo, o = h - 2, w - 2, kernel.shape[-1]
    ti, tj = -(-ho // 2), -(-wo // 2)
    v = _both_axes(BT, _tiles(x.astype(_F32), ti, tj, 4))
    v = [[t.reshape(-1, c).astype(dtype) for t in row] for row in v]
    u = jnp.einsum("ka,abco,lb->klco", _G, kernel.astype(_F32), _G).astype(dtype)
    m = [[p.reshape(n, ti, tj, o) for p in row] for row in _grid(v, u, (1, 0))]
    return _interleave(_both_axes(AT, m))[:, :ho, :wo], (v, u)


def conv3x3(x: Array, kernel: Array, precision: str = "f32") -> Array:
    """Unpadded stride-1 cross-correlation of x (N, H, W, C) with kernel (3, 3, C, O), H, W >= 3:
    (N, H - 2, W - 2, O) float32. For "bf16" ``precision`` x and kernel are rounded to bfloat16,
    and so are the transformed tiles, the transformed kernel and (for the gradients) the
    transformed cotangent, for products that accumulate in float32; the gradients come back in
    bfloat16 (float32 for "f32")."""
    dtype = _DTYPES[precision]
    return _conv3x3(x.astype(dtype), kernel.astype(dtype), precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv3x3(x: Array, kernel: Array, precision: str) -> Array:
    return _forward(x, kernel, _DTYPES[precision])[0]


def _fwd(x, kernel, precision):
    return _forward(x, kernel, _DTYPES[precision])


def _bwd(precision, residuals, dy):
    """dy (N, Ho, Wo, O) -> (dx (N, Ho + 2, Wo + 2, C), dkernel (3, 3, C, O)), in the precision's
    dtype."""
    dtype = _DTYPES[precision]  # x's and the kernel's too (conv3x3)
    v, u = residuals
    n, ho, wo, o = dy.shape
    c = u.shape[2]
    ti, tj = -(-ho // 2), -(-wo // 2)
    dm = _both_axes(_A, _tiles(dy.astype(_F32), ti, tj, 2))
    dm = [[t.reshape(-1, o).astype(dtype) for t in row] for row in dm]
    dv = [[p.reshape(n, ti, tj, c) for p in row] for row in _grid(dm, u, (1, 1))]
    du = jnp.stack([jnp.stack(row) for row in _grid(v, dm, (0, 0))])
    # Each input pixel lies in up to 2x2 overlapping tiles: tile (i, j)'s pixel (a, b) is at rows
    # 2i + a, so the 4x4 tile gradients t[a][b] fold into 2x2 blocks, shifted one tile down/right.
    t = _both_axes(_B, dv)
    shift = lambda z, di, dj: jnp.pad(z, ((0, 0), (di, 1 - di), (dj, 1 - dj), (0, 0)))
    fold = lambda p, q: _sum([shift(t[p + 2 * i][q + 2 * j], i, j) for i in (0, 1) for j in (0, 1)])
    blocks = [[fold(p, q) for q in (0, 1)] for p in (0, 1)]
    dx = _interleave(blocks)[:, : ho + 2, : wo + 2]
    dk = jnp.einsum("ka,klco,lb->abco", _G, du, _G)
    return dx.astype(dtype), dk.astype(dtype)


_conv3x3.defvjp(_fwd, _bwd)
