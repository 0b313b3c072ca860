"""The PyTorch MDHR against the official model: state dicts, golden outputs,
the export-friendly region gate, devices and T."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mdhr
from mdhr.aus import AU_SETS
from mdhr.model import GATConv, RegionGate
from tests.support.golden import CONFIGS, DATA, deterministic_init_, golden, reference_input

# Exports or runs the full model: the slow tier.
pytestmark = pytest.mark.slow


def manifest(dataset, backbone):
    return json.loads((DATA / f"state_dict_{dataset}_{backbone}.json").read_text())


@pytest.mark.parametrize("dataset,backbone", CONFIGS)
def test_state_dict_matches_official_manifest(dataset, backbone):
    model = mdhr.build_model(dataset, backbone)
    ours = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()]
    assert ours == manifest(dataset, backbone)


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: "-".join(c))
def golden_run(request):
    dataset, backbone = request.param
    model = deterministic_init_(mdhr.build_model(dataset, backbone))
    with torch.no_grad():
        outputs = model(torch.from_numpy(reference_input()))
    return model, [o.numpy() for o in outputs], golden(dataset, backbone)


def test_golden_outputs(golden_run):
    model, outputs, expected = golden_run
    names = [*model.aus.region_order, "au"]
    assert list(expected) == names
    for name, ours in zip(names, outputs):
        ref = expected[name]
        assert ours.shape == ref.shape
        tolerance = 1e-5 if name == "au" else 1e-4
        np.testing.assert_allclose(ours, ref, rtol=0, atol=tolerance, err_msg=name)
        if name != "au":
            np.testing.assert_array_equal(ours.argmax(1), ref.argmax(1), err_msg=f"{name} argmax")


# ------------------------------------------------ the official region gate
def official_adjacency(aus, region_logits):
    """The official path, op for op: argmax(softmax) -> dec2bin with
    bitwise_and -> per-AU mask -> adjacency * mask + eye."""
    bits = {}
    for region, logits in zip(aus.regions, region_logits):
        index = torch.argmax(F.softmax(logits, dim=1), dim=1)
        powers = 2 ** torch.arange(region.num_bits - 1, -1, -1).to(index.dtype)
        bits[region.name] = index.unsqueeze(-1).bitwise_and(powers).ne(0).float()
    taken = {r.name: 0 for r in aus.regions}
    columns = []
    for region_name in aus.au_region:
        columns.append(bits[region_name][:, taken[region_name]:taken[region_name] + 1])
        taken[region_name] += 1
    mask = torch.cat(columns, dim=1).unsqueeze(1)
    adjacency = torch.tensor(aus.adjacency()).unsqueeze(0).float()
    return adjacency * mask + torch.eye(aus.num_aus)


OFFICIAL_ADJACENCY = {
    "BP4D": [[0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1],
             [0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1],
             [0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0],
             [1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1],
             [1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0],
             [1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0]],
    "DISFA": [[0, 0, 0, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1],
              [1, 1, 1, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0, 0],
              [1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0, 0]],
}


@pytest.mark.parametrize("dataset", AU_SETS)
def test_adjacency_is_the_official_table(dataset):
    assert AU_SETS[dataset].adjacency() == OFFICIAL_ADJACENCY[dataset]


@pytest.mark.parametrize("dataset", AU_SETS)
def test_region_gate_equals_official_bits(dataset):
    aus = AU_SETS[dataset]
    gate = RegionGate(aus)
    generator = torch.Generator().manual_seed(0)
    logits = [torch.randn(4000, r.num_classes, generator=generator) for r in aus.regions]
    # ties and every class as the winner, so the lowest-index rule is exercised
    for region, lg in zip(aus.regions, logits):
        lg[:region.num_classes] = -5.0
        lg[torch.arange(region.num_classes), torch.arange(region.num_classes)] = 5.0
        lg[region.num_classes:2 * region.num_classes] = 1.0  # all tied
        lg[-1, :] = lg[-1, 0]
    torch.testing.assert_close(gate(logits), official_adjacency(aus, logits), rtol=0, atol=0)


def test_cut_edges_get_exactly_zero_attention():
    """The finite penalty replacing the official -inf gives the same softmax."""
    torch.manual_seed(0)
    gat = GATConv(512)
    with torch.no_grad():
        for p in (gat.scoring_fn_source, gat.scoring_fn_target):
            p.normal_(0, 1)  # large scores, the hard case
    x = torch.randn(64, 12, 512)
    adjacency = (torch.rand(64, 12, 12) > 0.5).float() + torch.eye(12)
    adjacency.clamp_(max=1)
    h = gat.linear(x)
    scores = gat.leakyReLU((h * gat.scoring_fn_source[0]).sum(-1, keepdim=True)
                           + (h * gat.scoring_fn_target[0]).sum(-1).unsqueeze(1))
    official = torch.softmax(scores + torch.where(adjacency < 0.1, -torch.inf, 0.0), dim=-1)
    expected = F.elu(official @ h + x + gat.bias)
    torch.testing.assert_close(gat(adjacency, x), expected, rtol=0, atol=1e-6)


# --------------------------------------------------- devices and clip length
@pytest.mark.parametrize("dataset,backbone", CONFIGS)
def test_forward_runs_where_its_tensors_are(dataset, backbone):
    """On the meta device nothing computes, but any tensor pinned to CPU or
    CUDA inside forward would fail to mix with meta ones."""
    with torch.device("meta"):
        model = mdhr.build_model(dataset, backbone)
    outputs = model(torch.empty(2, 3, 3, 224, 224, device="meta"))
    aus = AU_SETS[dataset]
    assert [tuple(o.shape) for o in outputs] == [(6, r.num_classes) for r in aus.regions] + [(6, aus.num_aus)]
    assert all(o.device.type == "meta" for o in outputs)


def test_temporal_average_equals_official_pool_for_long_clips():
    x = torch.randn(2, 64, 15, 7, 7)  # [B, C, T-1, H, W], the official layout
    official = torch.nn.AvgPool3d((10, 1, 1), stride=(1, 1, 1), padding=(5, 0, 0))(x)
    ours = mdhr.model.TemporalAverage()(x.transpose(1, 2).flatten(2))  # ours: [B, T-1, C*H*W]
    torch.testing.assert_close(ours.unflatten(2, (64, 7, 7)).transpose(1, 2), official, rtol=0, atol=1e-6)


def test_short_clips_are_an_extension_with_zero_padding():
    x = torch.randn(1, 3, 8)  # T = 4: 3 differences of 8 features
    ours = mdhr.model.TemporalAverage()(x)
    assert ours.shape == (1, 4, 8)
    # frame t averages differences t-5 .. t+4 over a window of 10, zeros counted
    torch.testing.assert_close(ours[:, 0], x[:, :3].sum(1) / 10)
    torch.testing.assert_close(ours[:, 3], x[:, :3].sum(1) / 10)


def test_batch_and_clip_length_are_free():
    model = deterministic_init_(mdhr.build_model("DISFA", "resnet"))
    clips = torch.from_numpy(reference_input(batch=2, frames=16))
    with torch.no_grad():
        together = model(clips)[-1]
        alone = model(clips[1:])[-1]
        short = model(clips[:, :4])[-1]
    torch.testing.assert_close(together[16:], alone, rtol=0, atol=1e-5)
    assert short.shape == (8, 8) and torch.isfinite(short).all()
