"""The fast CPU rasteriser: every tile composited in one vectorised pass, with an analytic backward.

:func:`bin_to_tiles` lists each tile's Gaussians at once (a Gaussian is repeated for every tile its
box touches: the reference's 3-sigma square cut to where its alpha can reach 1/255, :func:`alpha_extent`;
then the pairs are sorted by tile and, within a tile, by depth) into a padded (tiles, K) index.
:class:`CompositeTiles` composites all tiles together, K in chunks whose transmittance is carried from
one chunk to the next (memory bounded: at most :data:`MAX_PAIRS` pixel-Gaussian pairs at once),
without autograd: its backward walks the chunks in reverse, as 3DGS and gsplat do, with the forward's
alphas and weights of each chunk while they fit in :data:`SAVE_PAIRS`, past that recomputed from the
saved transmittance at the chunk's start (memory stays bounded). The projection (means, scales,
rotations, SH -> 2D conics and colours) stays in autograd.

Same conventions and results as :func:`portrait3d.splat.rasterize.render_torch` (the reference), to
float rounding and the chunk where a tile stops once every pixel is opaque.
"""

from __future__ import annotations

import math

import torch

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
TRANSMITTANCE_MIN = 1e-4
MAX_PAIRS = 1 << 22
"""(pixel, Gaussian) pairs composited at once: about 16 MB a float tensor, a dozen of them live at a time."""
SAVE_PAIRS = 1 << 22
"""(pixel, Gaussian) pairs whose alpha and weight the forward keeps for the backward (8 bytes a pair: at most 32 MB);
the chunks past it are recomputed. 12 000 Gaussians at 192 px are about 2.5 million pairs a picture."""


def bin_to_tiles(
    lo: torch.Tensor, hi: torch.Tensor, order: torch.Tensor, width: int, height: int, tile: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each tile's Gaussians, front to back.

    Args:
        lo, hi: (N, 2) pixel bounds of each Gaussian's box (floor and ceil, x then y).
        order: (M,) indices of the visible Gaussians sorted by depth.
        width, height: image size; tiles are ``tile`` pixels square, ``ceil(size / tile)`` a side.
    Returns:
        ``index`` (T, K) long: Gaussian indices per tile (row-major tiles), padded with N;
        ``counts`` (T,) long: how many of each row are real.
    """
    tiles_x, tiles_y = -(-width // tile), -(-height // tile)
    n, device = lo.shape[0], lo.device
    # A Gaussian overlaps tile column t when hi >= t * tile and lo < (t + 1) * tile (as the reference).
    t0 = torch.div(lo[order], tile, rounding_mode="floor").long()
    t1 = torch.div(hi[order], tile, rounding_mode="floor").long()
    t0[:, 0].clamp_(0, tiles_x - 1), t1[:, 0].clamp_(-1, tiles_x - 1)
    t0[:, 1].clamp_(0, tiles_y - 1), t1[:, 1].clamp_(-1, tiles_y - 1)
    span = (t1 - t0 + 1).clamp_min(0)
    per_gaussian = span[:, 0] * span[:, 1]
    owner = torch.repeat_interleave(torch.arange(order.numel(), device=device), per_gaussian)
    first = torch.cumsum(per_gaussian, 0) - per_gaussian
    offset = torch.arange(owner.numel(), device=device) - _rows(first, owner)
    columns = _rows(span[:, 0], owner)
    down = torch.div(offset, columns, rounding_mode="floor")
    tx = _rows(t0[:, 0], owner) + offset - down * columns  # the remainder, without a second integer division
    ty = _rows(t0[:, 1], owner) + down
    tile_id = ty * tiles_x + tx
    # Pairs come in depth order; a stable sort by tile keeps it within each tile. Sorted as the smallest integers
    # that hold the tile numbers: 16 bits sort about 5x faster than 64 on the CPU.
    key_type = torch.int16 if tiles_x * tiles_y <= torch.iinfo(torch.int16).max else torch.int32
    tile_id, by_tile = torch.sort(tile_id.to(key_type), stable=True)
    tile_id = tile_id.long()
    gaussian = _rows(order, _rows(owner, by_tile))
    counts = torch.bincount(tile_id, minlength=tiles_x * tiles_y)
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(tile_id.numel(), device=device) - _rows(start, tile_id)
    index = torch.full(
        (tiles_x * tiles_y, int(counts.max()) if counts.numel() else 0), n, dtype=torch.long, device=device
    )
    index.view(-1).index_copy_(0, tile_id * index.shape[1] + slot, gaussian)
    return index, counts


def tile_pixels(
    width: int, height: int, tile: int, dtype=torch.float32, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres of every tile, local to the tile: ``(offsets (P, 2), origins (T, 2))``, P = tile²."""
    tiles_x, tiles_y = -(-width // tile), -(-height // tile)
    ys, xs = torch.meshgrid(*(torch.arange(tile, dtype=dtype, device=device),) * 2, indexing="ij")
    offsets = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1) + 0.5
    oy, ox = torch.meshgrid(
        torch.arange(tiles_y, dtype=dtype, device=device),
        torch.arange(tiles_x, dtype=dtype, device=device),
        indexing="ij",
    )
    origins = torch.stack([ox.reshape(-1), oy.reshape(-1)], -1) * tile
    return offsets, origins


def pixel_moments(offsets: torch.Tensor) -> torch.Tensor:
    """(P, 2) pixel offsets -> (P, 6) monomials 1, x, y, x², y², xy (a 2D quadratic form is a dot product with them)."""
    x, y = offsets.unbind(-1)
    return torch.stack([torch.ones_like(x), x, y, x * x, y * y, x * y], -1)


def _chunk_alpha(moments, origins, mean2d, conic, log_opacity):
    """One chunk's alphas. moments (P, 6); origins (A, 2); mean2d (A, C, 2), conic (A, C, 3), log_opacity (A, C).

    Returns (A, P, C) alpha = min(opacity · exp(power), ALPHA_MAX), 0 where under ALPHA_MIN. The opacity is
    folded into the quadratic form's constant term (exp(power + log opacity)) and the cut is one
    ``threshold``: three passes over the chunk instead of nine (masks, ``masked_fill``, products). The
    conic is positive definite (the projection's dilation), so power <= 0 but for rounding.
    """
    mx, my = (mean2d - origins[:, None, :]).unbind(-1)  # tile-local, so the expanded form stays accurate
    a, b, c = conic.unbind(-1)
    # power = -a dx²/2 - c dy²/2 - b dx dy with dx = x - mx, dy = y - my, expanded in x and y: one matmul.
    coefficients = torch.stack(
        [
            -0.5 * a * mx * mx - 0.5 * c * my * my - b * mx * my + log_opacity,
            a * mx + b * my,
            c * my + b * mx,
            -0.5 * a,
            -0.5 * c,
            -b,
        ],
        1,
    )  # (A, 6, C)
    alpha = torch.matmul(moments, coefficients).exp_()  # (A, P, C)
    return torch.threshold(alpha, ALPHA_MIN, 0.0).clamp_max_(ALPHA_MAX)


class CompositeTiles(torch.autograd.Function):
    """Front-to-back alpha compositing of binned Gaussians (forward without autograd, analytic backward).

    Inputs: mean2d (N, 2), conic (N, 3), colour (N, 3), opacity (N,), background (3,); the binning
    ``index`` (T, K) / ``counts`` (T,) from :func:`bin_to_tiles`; width, height, tile, chunk, and
    ``max_pairs``: the most (pixel, Gaussian) pairs held at once (tiles are taken in groups under it);
    ``save_pairs``: the most pairs whose alphas and weights are kept from the forward for the backward (the
    backward recomputes the rest's, so the memory is bounded whatever the scene; docs/BENCHMARKS.md, "Splat
    distillation speed").
    Outputs: rgb (H, W, 3) over ``background``, alpha (H, W).
    """

    @staticmethod
    def forward(
        ctx,
        mean2d,
        conic,
        colour,
        opacity,
        background,
        index,
        counts,
        width,
        height,
        tile,
        chunk,
        max_pairs,
        save_pairs,
    ):
        offsets, origins = tile_pixels(width, height, tile, mean2d.dtype, mean2d.device)
        moments = pixel_moments(offsets)
        packed = _packed(mean2d, conic, colour, opacity)
        num_tiles, pixels = index.shape[0], offsets.shape[0]
        rgb = mean2d.new_zeros(num_tiles, pixels, 3)
        transmittance = mean2d.new_ones(num_tiles, pixels)
        steps = []  # per chunk: (active tiles, their transmittance at the chunk's start)
        for k0 in range(0, index.shape[1], chunk):
            active = counts > k0
            if k0:
                active &= transmittance.amax(1) >= TRANSMITTANCE_MIN  # a tile whose pixels are all opaque stops
            active = torch.nonzero(active).squeeze(1)
            if not active.numel():
                break
            for group in active.split(max(1, max_pairs // (pixels * chunk))):
                m, q, col, log_o, _ = _unpack(_rows(packed, _rows(index[:, k0 : k0 + chunk], group)))
                alpha = _chunk_alpha(moments, _rows(origins, group), m, q, log_o)
                start = _rows(transmittance, group)
                weights, through = _chunk_weights(alpha, start)
                # Products ordered so that the batched matmul's output is the long pixel axis, not the colour's 3:
                # a third faster at these sizes (also below).
                rgb.index_add_(0, group, torch.bmm(col.transpose(1, 2), weights.transpose(1, 2)).transpose(1, 2))
                transmittance.index_copy_(0, group, start * through)
                # The backward needs each chunk's alphas and weights: kept while they fit in save_pairs,
                # recomputed from ``start`` after that.
                kept = (alpha, weights) if alpha.numel() <= save_pairs else None
                save_pairs -= alpha.numel() if kept else 0
                steps.append((k0, group, start, kept))
        ctx.save_for_backward(mean2d, conic, colour, opacity, background, index, transmittance)
        ctx.steps, ctx.shape = steps, (width, height, tile, chunk)
        rgb = rgb + transmittance[..., None] * background
        return _untile(rgb, width, height, tile), _untile(1.0 - transmittance, width, height, tile)

    @staticmethod
    def backward(ctx, grad_rgb, grad_alpha):
        mean2d, conic, colour, opacity, background, index, final = ctx.saved_tensors
        width, height, tile, chunk = ctx.shape
        offsets, origins = tile_pixels(width, height, tile, mean2d.dtype, mean2d.device)
        packed = _packed(mean2d, conic, colour, opacity)
        g_rgb = _tile(grad_rgb, tile)  # (T, P, 3)
        g_alpha = _tile(grad_alpha[..., None], tile)[..., 0]  # (T, P)
        n = mean2d.shape[0]
        # One row per Gaussian (and the padding's): the gradients of mean2d (2), conic (3), colour (3), opacity (1).
        grads = mean2d.new_zeros(n + 1, 9)
        # Everything behind a pair, dotted with the pixel's gradient: the later pairs' colour and the background,
        # less the alpha output's share (alpha = 1 - final transmittance).
        behind = final * ((g_rgb * background).sum(-1) - g_alpha)
        moments = pixel_moments(offsets)
        for k0, active, start, kept in reversed(ctx.steps):
            idx = _rows(index[:, k0 : k0 + chunk], active)
            m, q, col, log_o, o = _unpack(_rows(packed, idx))
            corners = _rows(origins, active)
            if kept is None:
                alpha = _chunk_alpha(moments, corners, m, q, log_o)
                weights = _chunk_weights(alpha, start)[0]
            else:
                alpha, weights = kept
            g = _rows(g_rgb, active)
            colour_dot = torch.bmm(g, col.transpose(1, 2))  # (A, P, C)
            weighted = weights * colour_dot
            inclusive = torch.cumsum(weighted, dim=2)
            reach = _rows(behind, active) + inclusive[..., -1]
            behind.index_copy_(0, active, reach)
            later = reach[:, :, None] - inclusive
            # d out / d alpha of a pair is its transmittance before (weight / alpha) times its colour, less what
            # it hides behind it (later / (1 - alpha)); times d alpha / d power = alpha where alpha is neither
            # cut (alpha and weight 0 already) nor clamped at ALPHA_MAX (no gradient there).
            odds = torch.rsub(alpha, 1.0)
            torch.div(alpha, odds, out=odds)
            g_power = weighted.sub_(later.mul_(odds)).masked_fill_(alpha >= ALPHA_MAX, 0.0)
            g_colour = torch.bmm(g.transpose(1, 2), weights).transpose(1, 2)  # (A, C, 3)
            # Sums over pixels of g_power times 1, x, y, x², y², xy: one matmul, then the conic's and the
            # mean's gradients follow from dx = x - mx, dy = y - my; d alpha / d opacity = alpha / opacity.
            s1, sx, sy, sxx, syy, sxy = torch.matmul(moments.T, g_power).unbind(1)  # (A, C) each
            local = m - corners[:, None, :]
            mx, my = local.unbind(-1)
            s_dx, s_dy = sx - mx * s1, sy - my * s1
            s_dxdx = sxx - 2 * mx * sx + mx * mx * s1
            s_dydy = syy - 2 * my * sy + my * my * s1
            s_dxdy = sxy - mx * sy - my * sx + mx * my * s1
            a, b, c = q.unbind(-1)
            pair_grads = torch.cat(
                [
                    torch.stack([a * s_dx + b * s_dy, c * s_dy + b * s_dx], -1),
                    torch.stack([-0.5 * s_dxdx, -s_dxdy, -0.5 * s_dydy], -1),
                    g_colour,
                    (s1 / o.clamp_min(ALPHA_MIN))[..., None],  # under ALPHA_MIN every alpha is cut: s1 = 0
                ],
                -1,
            )
            grads.index_add_(0, idx.reshape(-1), pair_grads.reshape(-1, 9))
        g_background = (final[..., None] * g_rgb).sum((0, 1))
        return (
            grads[:n, 0:2],
            grads[:n, 2:5],
            grads[:n, 5:8],
            grads[:n, 8],
            g_background,
            *([None] * 8),
        )


def _packed(mean2d, conic, colour, opacity):
    """(N + 1, 10) rows of mean2d, conic, colour, log opacity and opacity, with one transparent row appended at
    index N (the bins' padding): a chunk's pairs are gathered in one indexing."""
    rows = torch.cat([mean2d, conic, colour, torch.log(opacity)[:, None], opacity[:, None]], 1)
    padding = rows.new_tensor([[-1e6, -1e6, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, -math.inf, 0.0]])
    return torch.cat([rows, padding])


def _rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]`` for a long ``index`` of any shape: index_select, about 3x faster on the CPU than indexing."""
    return x.index_select(0, index.reshape(-1)).view(*index.shape, *x.shape[1:])


def _unpack(rows):
    """(A, C, 10) gathered rows -> mean2d (A, C, 2), conic (A, C, 3), colour (A, C, 3), log opacity, opacity (A, C)."""
    return rows[..., 0:2], rows[..., 2:5], rows[..., 5:8], rows[..., 8], rows[..., 9]


def _chunk_weights(alpha: torch.Tensor, start: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, P, C) alphas and (A, P) transmittance at the chunk's start -> each pair's weight in the pixel (A, P, C)
    and the transmittance through the chunk (A, P)."""
    before, through = _transmittances(alpha)
    # alpha times the transmittance before each pair is the drop in transmittance across it.
    return (before - through).mul_(start[:, :, None]), through[..., -1]


def _transmittances(alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, P, C) alphas -> products of (1 - alpha) along C before each pair and through it (views of one buffer:
    a leading column of ones makes one cumprod give both, without a concatenation)."""
    products = alpha.new_empty(*alpha.shape[:2], alpha.shape[2] + 1)
    products[..., 0] = 1.0
    torch.sub(1.0, alpha, out=products[..., 1:])
    products.cumprod_(2)
    return products[..., :-1], products[..., 1:]


def _untile(x: torch.Tensor, width: int, height: int, tile: int) -> torch.Tensor:
    """(T, tile², C...) -> (H, W, C...), cropping the padding of the last tile row and column."""
    tiles_x, tiles_y = -(-width // tile), -(-height // tile)
    rest = x.shape[2:]
    x = x.reshape(tiles_y, tiles_x, tile, tile, *rest).transpose(1, 2)
    return x.reshape(tiles_y * tile, tiles_x * tile, *rest)[:height, :width].contiguous()


def _tile(x: torch.Tensor, tile: int) -> torch.Tensor:
    """(H, W, C) -> (T, tile², C), padding the image with zeros to whole tiles."""
    height, width, channels = x.shape
    tiles_x, tiles_y = -(-width // tile), -(-height // tile)
    x = torch.nn.functional.pad(x, (0, 0, 0, tiles_x * tile - width, 0, tiles_y * tile - height))
    x = x.reshape(tiles_y, tile, tiles_x, tile, channels).transpose(1, 2)
    return x.reshape(tiles_y * tiles_x, tile * tile, channels)


def alpha_extent(conic: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
    """(N, 2) half-width and half-height in pixels of the box outside which a Gaussian's alpha is under ALPHA_MIN.

    alpha = opacity · exp(-q/2) >= 1/255 needs q <= d² = 2 ln(255 opacity): an ellipse whose box has half-sides
    d·sqrt(Σxx), d·sqrt(Σyy), Σ the 2D covariance (the conic's inverse). Binning by this box (within the
    3-sigma square the reference uses) drops only tiles where every alpha is cut: the same picture, about a
    quarter fewer (pixel, Gaussian) pairs for oblique discs.
    """
    a, b, c = conic.unbind(-1)
    det = (a * c - b * b).clamp_min(1e-12)
    reach = torch.sqrt(2.0 * torch.log((opacity / ALPHA_MIN).clamp_min(1.0)))
    return torch.stack([reach * torch.sqrt(c / det), reach * torch.sqrt(a / det)], -1)


def composite(
    mean2d: torch.Tensor,
    conic: torch.Tensor,
    colour: torch.Tensor,
    opacity: torch.Tensor,
    radius: torch.Tensor,
    depth: torch.Tensor,
    visible: torch.Tensor,
    width: int,
    height: int,
    background: torch.Tensor,
    tile: int = 4,
    chunk: int = 16,
    max_pairs: int = MAX_PAIRS,
    save_pairs: int = SAVE_PAIRS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin the projected Gaussians (N, ...) to tiles and composite them: ``(rgb (H, W, 3), alpha (H, W))``."""
    with torch.no_grad():
        visible_index = torch.nonzero(visible).squeeze(1)
        order = visible_index[torch.argsort(depth[visible_index])]
        half = torch.minimum(radius[:, None], alpha_extent(conic, opacity))
        lo = (mean2d - half).floor()
        hi = (mean2d + half).ceil()
        index, counts = bin_to_tiles(lo, hi, order, width, height, tile)
    # Nothing to keep for a backward that will not run (the pictures rendered without gradients).
    inputs = (mean2d, conic, colour, opacity, background)
    if not (torch.is_grad_enabled() and any(x.requires_grad for x in inputs)):
        save_pairs = 0
    return CompositeTiles.apply(*inputs, index, counts, width, height, tile, chunk, max_pairs, save_pairs)
