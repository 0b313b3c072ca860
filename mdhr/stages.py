"""MDHR cut at its temporal seam: a frame stage run once per frame and a
clip stage run once per window over cached frame features.

MDHR looks across frames in three places only: the frame differences, the
temporal average of the dynamic features (10 frames wide) and the per-AU
temporal convolution (5 wide).  The cut sits just before the temporal
average, the first operator whose output for one frame depends on frames
other than the pair (t-1, t):

* ``FrameStage``: frame t (and the previous frame's backbone taps) ->
  the static tokens of t, the motion of the pair (t-1, t) at four scales,
  and t's own taps for the next call.  This is the backbone and the
  strided convolutions of the differences: nearly all of a clip's cost.
* ``ClipStage``: one window's static tokens [T] and its T-1 in-window pair
  motions -> the official outputs: temporal average (zero padding and all,
  exactly as the official window sees it), adaptive mix, region and AU
  modelling, gated GAT, temporal convolution, classifier.

What the frame stage passes on as a pair's motion is not the four scales'
dynamics themselves (4 x width x 7 x 7) but their images under the two
1x1 convolutions that read them after the average, without biases: the
scale's 16-channel vote (``weight_i``) and its 512-channel projection
(``convcat``).  The temporal average and both convolutions are linear, and
the mixing weights are per pixel, so

    convcat(sum_i w_i * avg(d_i)) = sum_i w_i * avg(C d_i) + bias  (sum_i w_i = 1)
    weight_i(avg(d_i))          = avg(W_i d_i) + bias_i

hold exactly in arithmetic; in float32 only the order of additions changes
(AU error about 1e-7, see tests/export/test_stages.py).  That moves the window's
largest convolution (2048 -> 512 channels on every frame of every window)
into the frame stage, where it runs once per scale per frame, and shrinks
the cache per frame from 1.71 MB to 0.51 MB for ResNet-50 (49 x 512 static
+ 4 x 528 x 7 x 7 motion floats, the same for Swin-B).  Cutting earlier
(caching the raw taps) would cache 1.5 M floats per frame and redo the
strided convolutions of every window.

At hop 1 a centred window scores one frame, its centre: ``ClipCentre`` is
the clip stage for that frame alone.  After the temporal average everything
is per frame until the temporal convolution (5 frames wide), so it runs the
region and AU modelling on those 5 frames instead of T, with the clip
stage's operators and shapes around them.

The official window's first frame has no predecessor inside the window: the
official model differences within the window (T-1 pairs).  So a window
takes the pair motions of its frames 1..T-1 only; the first frame's pair
is cached (a later window may need it) but not used by this one.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mdhr.model import MDHR

SCALES = 4
PROJECTION, VOTE = 512, 16  # channels of convcat and of each weight_i
MOTION_CHANNELS = PROJECTION + VOTE


def tap_shapes(model: MDHR) -> list[tuple[int, int, int]]:
    """(channels, height, width) of the four backbone taps of one frame."""
    return [(c, 56 // 2 ** i, 56 // 2 ** i) for i, c in enumerate(model.Backbone.tap_channels)]


def cached_floats_per_frame(model: MDHR) -> int:
    """How many floats ``FrameStage`` leaves in the cache for each frame."""
    return 49 * 512 + SCALES * MOTION_CHANNELS * 7 * 7


class FrameStage(nn.Module):
    """``forward(frames [N, 3, 224, 224], *previous taps)`` ->
    ``(static [N, 49, 512], motion [N, 4, 528, 7, 7], *taps)``.

    ``previous taps`` are the taps this stage returned for the frame before
    (in the same order, each [N, C, H, W]).  A frame with no predecessor
    passes its own taps, which reads as "no motion" (a repeated frame)."""

    def __init__(self, model: MDHR):
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor, *previous: torch.Tensor):
        tokens, taps = self.model.Backbone(frames)
        return (self.model.global_linear(tokens), self.motions(taps, previous), *taps)

    def motions(self, taps, befores) -> torch.Tensor:
        """[N, 4, 528, 7, 7]: the motion of each pair (befores[n], taps[n])."""
        mfd = self.model.MFD
        return torch.stack([self.motion(i, mfd.pair_dynamics(i, tap - before))
                            for i, (tap, before) in enumerate(zip(taps, befores), start=1)], dim=1)

    def motion(self, i: int, dynamics: torch.Tensor) -> torch.Tensor:
        """[N, width, 7, 7] dynamics of scale i -> [N, 528, 7, 7]: its
        ``convcat`` projection and its ``weight_i`` vote, biases left to the
        clip stage (they must be added after the average)."""
        mfd = self.model.MFD
        return torch.cat([F.conv2d(dynamics, mfd.convcat.weight),
                          F.conv2d(dynamics, getattr(mfd, f"weight_{i}").weight)], dim=1)


class FrameRun(nn.Module):
    """The frame stage over N consecutive frames in one call:
    ``forward(frames [N, 3, 224, 224], *previous taps [1, C, H, W])`` ->
    ``(static [N, 49, 512], motion [N, 4, 528, 7, 7], *taps of the last
    frame [1, C, H, W])``.  ``previous`` are the taps of the frame before
    ``frames[0]``; each later frame's predecessor is the frame before it in
    the call.  Every operator computes each frame alone, as ``FrameStage``
    does (the export checks the bits agree, ``export/stages.py``)."""

    def __init__(self, model: MDHR):
        super().__init__()
        self.stage = FrameStage(model)

    def forward(self, frames: torch.Tensor, *previous: torch.Tensor):
        tokens, taps = self.stage.model.Backbone(frames)
        befores = [torch.cat([before, tap[:-1]]) for before, tap in zip(previous, taps)]
        return (self.stage.model.global_linear(tokens), self.stage.motions(taps, befores),
                *(tap[-1:] for tap in taps))


class ClipStage(nn.Module):
    """``forward(static [B, T, 49, 512], motion [B, T-1, 4, 528, 7, 7])``
    -> the official outputs, each ``[B*T, n]``: region logits, then AU scores.
    ``motion[:, j]`` is the pair (frame j, frame j+1) of the window."""

    def __init__(self, model: MDHR):
        super().__init__()
        self.model = model

    def forward(self, static: torch.Tensor, motion: torch.Tensor):
        B, T = static.shape[:2]
        mfd = self.model.MFD
        # All four scales averaged over time at once, then split per scale.
        averaged = mfd.pooling(motion.flatten(2)).unflatten(2, motion.shape[2:]).flatten(0, 1)  # [B*T, 4, 528, 7, 7]
        projections, votes = averaged.split([PROJECTION, VOTE], dim=2)
        weights = mfd.scale_weights([votes[:, i] + getattr(mfd, f"weight_{i + 1}").bias[:, None, None]
                                     for i in range(SCALES)])  # [B*T, 4, 7, 7]
        mixed = (projections * weights[:, :, None]).sum(dim=1) + mfd.convcat.bias[:, None, None]
        x = static.flatten(0, 1) + mfd.tokens(mixed)
        return self.model.relationships(x, B, T)


def centre(frames: int) -> int:
    """The window position a centred window of hop 1 scores: the frame
    nearest its centre (T/2 for even T: the tie goes to the earlier window,
    so the later of the two middle frames)."""
    return frames // 2


def centre_reach(frames: int) -> tuple[int, int]:
    """Positions [lo, hi) whose per-frame features the centre's score reads:
    the temporal convolution's 5 frames around it, within the window."""
    c = centre(frames)
    return max(c - 2, 0), min(c + 3, frames)


class ClipCentre(nn.Module):
    """``ClipStage`` for the centre frame only (``centre``), what a centred
    window of hop 1 is run for: the same inputs, the outputs ``[B, n]`` of
    that one frame.  Everything after the temporal average is per frame up
    to the temporal convolution (5 wide), so only the frames it reads
    (``centre_reach``) go through the region and AU modelling: about 5/T
    of the clip stage's work.  The average and the temporal convolution
    keep the whole window's shapes (the frames outside the reach enter the
    convolution as zeros and leave no trace at the centre), so each value
    is computed by the same operators as in ``ClipStage``."""

    def __init__(self, model: MDHR):
        super().__init__()
        self.model = model

    def forward(self, static: torch.Tensor, motion: torch.Tensor):
        B, T = static.shape[:2]
        lo, hi = centre_reach(T)
        mfd = self.model.MFD
        averaged = mfd.pooling(motion.flatten(2)).unflatten(2, motion.shape[2:])[:, lo:hi].flatten(0, 1)
        projections, votes = averaged.split([PROJECTION, VOTE], dim=2)
        weights = mfd.scale_weights([votes[:, i] + getattr(mfd, f"weight_{i + 1}").bias[:, None, None]
                                     for i in range(SCALES)])
        mixed = (projections * weights[:, :, None]).sum(dim=1) + mfd.convcat.bias[:, None, None]
        x = static[:, lo:hi].flatten(0, 1) + mfd.tokens(mixed)  # [B*(hi-lo), 49, 512]
        region_logits, x = self.model.LRM(x)
        x = self.model.CRM(x, region_logits).unflatten(0, (B, hi - lo))
        padded = torch.cat([x.new_zeros(B, lo, *x.shape[2:]), x, x.new_zeros(B, T - hi, *x.shape[2:])], dim=1)
        c = centre(T)
        x = self.model.TCN(padded.flatten(0, 1), B, T).unflatten(0, (B, T))[:, c]
        at_centre = [logits.unflatten(0, (B, hi - lo))[:, c - lo] for logits in region_logits]
        return (*at_centre, self.model.node_classifier(x))
