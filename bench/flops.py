"""Matmul FLOPs of one forward pass (multiply-add = 2), as in VIDEOPRISM.md §9."""

from __future__ import annotations

from fiftyone_videoprism.core.configs import VideoPrismConfig


def _block_macs(seq: int, d: int, mlp: int) -> int:
    """One pre-LN block over ``seq`` tokens: projections, scores + weighted sum, MLP."""
    return 4 * seq * d * d + 2 * seq * seq * d + 2 * seq * d * mlp


def spatial_flops(c: VideoPrismConfig, frames: int, size: int) -> int:
    """The per-frame part of a clip: patch projection and spatial stack."""
    d, n = c.model_dim, (size // c.patch_size) ** 2
    macs = frames * n * c.patch_size**2 * 3 * d
    macs += c.num_spatial_layers * frames * _block_macs(n, d, c.mlp_dim)
    return 2 * macs


def video_flops(c: VideoPrismConfig, frames: int, size: int) -> int:
    """Video side of one clip: patch projection, spatial and temporal stacks (+ LvT layers)."""
    d, n = c.model_dim, (size // c.patch_size) ** 2
    macs = spatial_flops(c, frames, size) // 2
    macs += c.num_temporal_layers * n * _block_macs(frames, d, c.mlp_dim)
    if c.is_lvt:
        tokens, inner = frames * n, 4 * d
        macs += c.num_auxiliary_layers * _block_macs(tokens, d, c.mlp_dim)
        # Pooler: key and value projections to 4D dominate; one query, post projection.
        macs += 2 * tokens * d * inner + d * inner + 2 * tokens * inner + inner * d
    return 2 * macs


def text_flops(c: VideoPrismConfig, length: int) -> int:
    """One prompt of ``length`` positions run (plus the CLS) through the text tower."""
    return 2 * c.num_unimodal_layers * _block_macs(length + 1, c.model_dim, 4 * c.model_dim)
