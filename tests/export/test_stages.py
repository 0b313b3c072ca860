"""The split at the temporal seam is exact: frame stage (once per frame)
plus clip stage (once per window) gives the official model's outputs."""
import numpy as np
import pytest
import torch

import mdhr
from mdhr.stages import ClipStage, FrameStage, cached_floats_per_frame
from tests.support.golden import CONFIGS, deterministic_init_, golden, reference_input

# Exports or runs the full model: the slow tier.
pytestmark = pytest.mark.slow


def frame_features(model, frames: np.ndarray):
    """Run the frame stage over a sequence one frame at a time, as the
    runtime does; the first frame is its own predecessor."""
    stage = FrameStage(model).eval()
    statics, dynamics, previous = [], [], None
    with torch.no_grad():
        for frame in torch.from_numpy(frames):
            frame = frame[None]
            if previous is None:
                previous = stage.model.Backbone(frame)[1]
            static, pair, *previous = stage(frame, *previous)
            statics.append(static[0])
            dynamics.append(pair[0])
    return torch.stack(statics), torch.stack(dynamics)


def clip_outputs(model, statics, dynamics, start: int, frames: int):
    """The clip stage over the window [start, start + frames): its in-window
    pairs are those of frames start+1 .. start+frames-1."""
    with torch.no_grad():
        outputs = ClipStage(model).eval()(statics[None, start:start + frames],
                                          dynamics[None, start + 1:start + frames])
    return [o.numpy() for o in outputs]


@pytest.mark.parametrize("dataset,backbone", CONFIGS, ids=lambda c: c)
def test_stages_reproduce_the_golden_outputs(dataset, backbone):
    model = deterministic_init_(mdhr.build_model(dataset, backbone)).eval()
    statics, dynamics = frame_features(model, reference_input()[0])
    outputs = clip_outputs(model, statics, dynamics, 0, 16)
    expected = golden(dataset, backbone)
    for name, ours in zip([*model.aus.region_order, "au"], outputs):
        tolerance = 1e-5 if name == "au" else 1e-4
        np.testing.assert_allclose(ours, expected[name], rtol=0, atol=tolerance, err_msg=name)
        if name != "au":
            np.testing.assert_array_equal(ours.argmax(1), expected[name].argmax(1), err_msg=f"{name} argmax")


def test_any_window_reuses_the_cached_frames():
    """A window starting mid-sequence, from features computed once per frame,
    equals the single model run on exactly that window's frames."""
    torch.manual_seed(0)
    model = mdhr.build_model("BP4D", "resnet").eval()
    frames = np.random.default_rng(1).standard_normal((7, 3, 224, 224), dtype=np.float32)
    statics, dynamics = frame_features(model, frames)
    for start, length in ((2, 5), (0, 4)):
        staged = clip_outputs(model, statics, dynamics, start, length)
        with torch.no_grad():
            single = [o.numpy() for o in model(torch.from_numpy(frames[None, start:start + length]))]
        *regions, au = zip(staged, single)
        np.testing.assert_allclose(*au, rtol=0, atol=1e-5)
        for ours, reference in regions:  # logits of ~100 here: only the order of additions differs
            np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-4)
            np.testing.assert_array_equal(ours.argmax(1), reference.argmax(1))


def test_cached_features_per_frame():
    """Static tokens (49 x 512) and four scales' motion (528 x 7 x 7 each),
    float32, whatever the backbone."""
    for dataset, backbone in (("BP4D", "resnet"), ("DISFA", "swin_transformer")):
        assert cached_floats_per_frame(mdhr.build_model(dataset, backbone)) * 4 == 514_304  # 0.51 MB
