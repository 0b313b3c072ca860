"""MDHR cut at its temporal seam: a frame stage run once per frame and a
clip stage run once per window over cached frame features.

MDHR looks across frames in three places only: the frame differences, the
temporal average of the dynamic features (10 frames wide) and the per-AU
temporal convolution (5 wide).  The cut sits just before the temporal
average, the first operator whose output for one frame depends on frames
other than the pair (t-1, t):

* ``FrameStage``: frame t (and the previous frame's backbone taps) ->
  the static tokens of t, the four scales' dynamics of the pair (t-1, t),
  and t's own taps for the next call.  This is the backbone and the
  strided convolutions of the differences: nearly all of a clip's cost.
* ``ClipStage``: one window's static tokens [T] and its T-1 in-window pair
  dynamics -> the official outputs: temporal average (zero padding and all,
  exactly as the official window sees it), adaptive mix, region and AU
  modelling, gated GAT, temporal convolution, classifier.

What is cached per frame is the static tokens (49 x 512) and the pair
dynamics (4 x width x 7 x 7; width 2048 for ResNet-50, 1024 for Swin-B):
1.71 MB (ResNet) or 0.90 MB (Swin) in float32.  The linear layers after the
average could be folded into the frame stage to cache less, but the clip
stage would then sum in another order and treat the zero padding's bias
differently: the split would no longer be exact.  Cutting earlier (caching
the raw taps) would cache 1.5 M floats per frame and redo the strided
convolutions of every window.

The official window's first frame has no predecessor inside the window: the
official model differences within the window (T-1 pairs).  So a window
takes the pair dynamics of its frames 1..T-1 only; the first frame's pair
is cached (a later window may need it) but not used by this one.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from mdhr.model import MDHR

SCALES = 4


def tap_shapes(model: MDHR) -> list[tuple[int, int, int]]:
    """(channels, height, width) of the four backbone taps of one frame."""
    return [(c, 56 // 2 ** i, 56 // 2 ** i) for i, c in enumerate(model.Backbone.tap_channels)]


def cached_floats_per_frame(model: MDHR) -> int:
    """How many floats ``FrameStage`` leaves in the cache for each frame."""
    width = model.Backbone.tap_channels[-1]
    return 49 * 512 + SCALES * width * 7 * 7


class FrameStage(nn.Module):
    """``forward(frames [N, 3, 224, 224], *previous taps)`` ->
    ``(static [N, 49, 512], dynamics [N, 4, width, 7, 7], *taps)``.

    ``previous taps`` are the taps this stage returned for the frame before
    (in the same order, each [N, C, H, W]).  A frame with no predecessor
    passes its own taps, which reads as "no motion" (a repeated frame)."""

    def __init__(self, model: MDHR):
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor, *previous: torch.Tensor):
        tokens, taps = self.model.Backbone(frames)
        static = self.model.global_linear(tokens)
        dynamics = torch.stack([self.model.MFD.pair_dynamics(i, tap - before)
                                for i, (tap, before) in enumerate(zip(taps, previous), start=1)], dim=1)
        return (static, dynamics, *taps)


class ClipStage(nn.Module):
    """``forward(static [B, T, 49, 512], dynamics [B, T-1, 4, width, 7, 7])``
    -> the official outputs, each ``[B*T, n]``: region logits, then AU scores.
    ``dynamics[:, j]`` is the pair (frame j, frame j+1) of the window."""

    def __init__(self, model: MDHR):
        super().__init__()
        self.model = model

    def forward(self, static: torch.Tensor, dynamics: torch.Tensor):
        B, T = static.shape[:2]
        mfd = self.model.MFD
        # All four scales averaged over time at once, then split per scale.
        averaged = mfd.pooling(dynamics.flatten(2)).unflatten(2, dynamics.shape[2:])  # [B, T, 4, width, 7, 7]
        scales = [averaged[:, :, i].flatten(0, 1) for i in range(SCALES)]
        x = static.flatten(0, 1) + mfd.mix(scales)
        return self.model.relationships(x, B, T)
