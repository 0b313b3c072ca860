"""MDHR: Multi-scale Dynamic and Hierarchical Relationship modelling for facial
action unit recognition (Wang et al., CVPR 2024).

A clip of T face frames goes through an image backbone; static features of
the last map meet dynamic features made by differencing consecutive frames at
four scales.  AU features are then refined hierarchically: within facial
regions (with region heads), across regions (graph attention gated by the
region heads' decisions), and over time (a temporal convolution per AU).

Attribute names (``Backbone``, ``MFD``, ``LRM``, ...) are those of the official
state dicts, so official checkpoints load unchanged.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mdhr.aus import AUSet, au_set
from mdhr.backbones import build_backbone

FEATURE_DIM = 512  # width of every AU / region feature
GRID = 7  # the backbone's last map is GRID x GRID


class LinearBlock(nn.Module):
    """Linear -> BatchNorm over channels -> ReLU, on token sequences [N, L, C]."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)
        self.bn = nn.BatchNorm1d(out_features)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x).transpose(1, 2)  # [N, C, L] for BatchNorm1d
        return self.relu(self.bn(x)).transpose(1, 2)


class TemporalAverage(nn.Module):
    """Brings T-1 frame differences back to T frames: the mean of a 10-frame
    window (zeros beyond the clip counted in the mean), stride 1.

    The official model uses AvgPool3d(kernel 10, padding 5), which PyTorch
    only accepts for T >= 11.  The same mean is written here as one constant
    [T, T-1] averaging matrix applied along time: it also works for shorter
    clips (T >= 2, an extension of ours), and it needs no transposes of the
    large dynamic features (a 3-D pooling over them costs as much as the rest
    of the clip stage in ONNX Runtime)."""

    def __init__(self, half_window: int = 5):
        super().__init__()
        self.half_window = half_window

    def weights(self, pairs: int, like: torch.Tensor) -> torch.Tensor:
        """[pairs + 1, pairs]: output frame j averages pairs j-k .. j+k-1 (k = half window)."""
        k = self.half_window
        j = torch.arange(pairs + 1, device=like.device).unsqueeze(1)
        i = torch.arange(pairs, device=like.device).unsqueeze(0)
        inside = (i >= j - k) & (i <= j + k - 1)
        return inside.to(like.dtype) / (2 * k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T-1, F] -> [B, T, F]
        return torch.matmul(self.weights(x.shape[1], x), x)


class MultiscaleFacialDynamic(nn.Module):
    """Differences of consecutive frames at four backbone scales, each brought
    to 7x7 by a strided convolution, mixed by adaptive per-pixel weights."""

    def __init__(self, tap_channels: tuple[int, ...], half_window: int = 5):
        super().__init__()
        width = tap_channels[-1]  # every scale is projected to the deepest tap's width
        for i, c in enumerate(tap_channels, start=1):
            stride = width // c  # 8, 4, 2, 1: brings 56/28/14/7 down to 7
            setattr(self, f"conv{i}", nn.Conv2d(c, width, stride, stride=stride))
        self.convcat = nn.Conv2d(width, FEATURE_DIM, 1)
        for i in range(1, 5):
            setattr(self, f"bn{i}", nn.BatchNorm2d(width))
        self.bn = nn.BatchNorm1d(FEATURE_DIM)
        self.pooling = TemporalAverage(half_window)
        self.relu = nn.ReLU(inplace=True)
        for i in range(1, 5):
            setattr(self, f"weight_{i}", nn.Conv2d(width, 16, 1))
        self.weight = nn.Conv2d(64, 4, 1)
        for i in range(1, 5):
            setattr(self, f"wbn{i}", nn.BatchNorm2d(16))

    def pair_dynamics(self, i: int, difference: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] difference of two consecutive frames' tap i -> [N, width, 7, 7]
        motion features of scale i (per frame pair: the frame stage's last step)."""
        return self.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(difference)))

    def forward(self, taps: list[torch.Tensor], B: int, T: int) -> torch.Tensor:
        pairs = [self.pair_dynamics(i, frame_differences(tap, B, T)) for i, tap in enumerate(taps, start=1)]
        return self.mix([self.temporal_average(p, B, T) for p in pairs])

    def temporal_average(self, pairs: torch.Tensor, B: int, T: int) -> torch.Tensor:
        """[B*(T-1), width, 7, 7] pair dynamics of each clip -> [B*T, width, 7, 7]."""
        averaged = self.pooling(pairs.unflatten(0, (B, T - 1)).flatten(2))  # [B, T, width*49]
        return averaged.reshape(B * T, *pairs.shape[1:])

    def mix(self, scales: list[torch.Tensor]) -> torch.Tensor:
        """Per scale [B*T, width, 7, 7] averaged dynamics -> [B*T, 49, 512]:
        adaptive per-pixel weights over the scales, then the 1x1 projection."""
        weights = self.scale_weights([getattr(self, f"weight_{i}")(s) for i, s in enumerate(scales, start=1)])
        x = sum(s * weights[:, i:i + 1] for i, s in enumerate(scales))
        return self.tokens(self.convcat(x))

    def scale_weights(self, votes: list[torch.Tensor]) -> torch.Tensor:
        """Each scale's 16-channel vote (its ``weight_i`` convolution) ->
        per-pixel softmax weights over the scales [B*T, 4, 7, 7]."""
        votes = [self.relu(getattr(self, f"wbn{i}")(v)) for i, v in enumerate(votes, start=1)]
        return F.softmax(self.weight(torch.cat(votes, dim=1)), dim=1)

    def tokens(self, projected: torch.Tensor) -> torch.Tensor:
        """[B*T, 512, 7, 7] mixed dynamics after ``convcat`` -> [B*T, 49, 512] tokens."""
        return self.relu(self.bn(projected.flatten(2))).transpose(1, 2)


def frame_differences(tap: torch.Tensor, B: int, T: int) -> torch.Tensor:
    """[B*T, C, H, W] -> [B*(T-1), C, H, W]: frame t minus frame t-1 within each clip."""
    x = tap.unflatten(0, (B, T))
    return (x[:, 1:] - x[:, :-1]).flatten(0, 1)


class LocalRelationshipModeling(nn.Module):
    """Within-region modelling: each region's tokens feed a region head (a
    classifier over the 2^n on/off combinations of its AUs) and one AU
    feature per AU of the region."""

    def __init__(self, aus: AUSet):
        super().__init__()
        self.aus = aus
        self.class_linears = nn.ModuleList(LinearBlock(FEATURE_DIM, FEATURE_DIM) for _ in aus.au_names)
        if aus.region_projection:
            for region in aus.regions:
                setattr(self, f"{region.name}_linear", LinearBlock(FEATURE_DIM, FEATURE_DIM))
        for region in aus.regions:
            setattr(self, f"{region.name}_fc", nn.Linear(FEATURE_DIM, region.num_classes))

    def forward(self, x: torch.Tensor):
        grid = x.unflatten(1, (GRID, GRID))  # [BT, 7, 7, 512]
        region_tokens, region_logits = {}, []
        for region in self.aus.regions:
            top, bottom = region.rows
            tokens = grid[:, top:bottom].flatten(1, 2)  # [BT, 21, 512]
            if self.aus.region_projection:
                tokens = getattr(self, f"{region.name}_linear")(tokens)
            region_tokens[region.name] = tokens
            region_logits.append(getattr(self, f"{region.name}_fc")(tokens.mean(dim=1)))
        au_features = [linear(region_tokens[r]).mean(dim=1)
                       for linear, r in zip(self.class_linears, self.aus.au_region)]
        return region_logits, torch.stack(au_features, dim=1)  # [BT, N, 512]


class RegionGate(nn.Module):
    """Turns region head logits into the gated AU graph.

    Official: argmax(softmax(logits)) -> bits (int bitwise_and) -> per-AU
    mask -> adjacency * mask + identity.  Here the same decision is made with
    float operators every runtime handles natively: the first maximum as a
    one-hot (ties resolved to the lowest index, like argmax), then a constant
    table maps each class to the AUs it declares active."""

    def __init__(self, aus: AUSet):
        super().__init__()
        for region in aus.regions:
            self.register_buffer(f"{region.name}_table",
                                 torch.tensor(aus.region_class_to_aus(region)), persistent=False)
        self.region_names = [r.name for r in aus.regions]
        self.register_buffer("adjacency", torch.tensor(aus.adjacency(), dtype=torch.float32),
                             persistent=False)
        self.register_buffer("identity", torch.eye(aus.num_aus), persistent=False)

    @staticmethod
    def first_max_one_hot(logits: torch.Tensor) -> torch.Tensor:
        p = F.softmax(logits, dim=1)
        is_max = (p >= p.amax(dim=1, keepdim=True)).to(p.dtype)  # [BT, k], ties all 1
        k = logits.shape[1]
        earlier = torch.ones(k, k, dtype=p.dtype, device=p.device).triu(1)  # [i, j] = i < j
        maxima_before = is_max @ earlier
        return is_max * (maxima_before == 0).to(p.dtype)

    def forward(self, region_logits: list[torch.Tensor]) -> torch.Tensor:
        active = sum(self.first_max_one_hot(logits) @ getattr(self, f"{name}_table")
                     for name, logits in zip(self.region_names, region_logits))  # [BT, N]
        return self.adjacency * active.unsqueeze(1) + self.identity  # [BT, N, N]


class GATConv(nn.Module):
    """Single-head graph attention over AU nodes with a residual connection;
    edges whose weight is below ``threshold`` are cut."""

    def __init__(self, dim: int, threshold: float = 0.1):
        super().__init__()
        self.threshold = threshold
        self.linear = nn.Linear(dim, dim, bias=False)
        self.scoring_fn_target = nn.Parameter(torch.zeros(1, 1, dim))
        self.scoring_fn_source = nn.Parameter(torch.zeros(1, 1, dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.leakyReLU = nn.LeakyReLU(0.2)
        self.activation = nn.ELU()

    def forward(self, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)  # [BT, N, d]
        source = (h * self.scoring_fn_source[0]).sum(-1, keepdim=True)  # [BT, N, 1]
        target = (h * self.scoring_fn_target[0]).sum(-1).unsqueeze(1)  # [BT, 1, N]
        scores = self.leakyReLU(source + target)  # [BT, N, N]: node i attends to j
        # Official: -inf where the edge is cut.  A finite penalty gives the same
        # softmax (exp underflows to exactly 0 in float32 and float16) without
        # Where/-inf, and keeps float16 free of inf arithmetic.
        cut = (adjacency < self.threshold).to(scores.dtype)
        attention = F.softmax(scores - 10000.0 * cut, dim=-1)
        return self.activation(attention @ h + x + self.bias)


class CrossregionRelationshipModeling(nn.Module):
    def __init__(self, aus: AUSet):
        super().__init__()
        self.gate = RegionGate(aus)
        self.gat = GATConv(FEATURE_DIM)

    def forward(self, x: torch.Tensor, region_logits: list[torch.Tensor]) -> torch.Tensor:
        return self.gat(self.gate(region_logits), x)


class IndividualTemporalModeling(nn.Module):
    """A depthwise temporal convolution (kernel 5) per AU, then BatchNorm over
    AUs and ReLU."""

    def __init__(self, num_aus: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(num_aus)
        self.temporal_cnn = nn.ModuleList(
            nn.Conv1d(FEATURE_DIM, FEATURE_DIM, 5, padding=2, groups=FEATURE_DIM) for _ in range(num_aus))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, B: int, T: int) -> torch.Tensor:
        n, d = x.shape[1:]
        # All per-AU convolutions at once: one grouped conv over N*d channels.
        weight = torch.cat([conv.weight for conv in self.temporal_cnn])  # [N*d, 1, 5]
        bias = torch.cat([conv.bias for conv in self.temporal_cnn])
        seq = x.unflatten(0, (B, T)).flatten(2).transpose(1, 2)  # [B, N*d, T]
        seq = F.conv1d(seq, weight, bias, padding=2, groups=n * d)
        x = seq.transpose(1, 2).reshape(B * T, n, d)
        return self.relu(self.bn(x))


class NodeClassifier(nn.Module):
    """AU score: cosine similarity between each AU feature and that AU's
    (ReLU'd) prototype, in [-1, 1]."""

    def __init__(self, num_aus: int):
        super().__init__()
        self.sc = nn.Parameter(torch.zeros(num_aus, FEATURE_DIM))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prototypes = F.normalize(self.relu(self.sc), dim=-1)
        return (F.normalize(x, dim=-1) * prototypes).sum(dim=-1)  # [BT, N]


class MDHR(nn.Module):
    """``forward(clips [B, T, 3, 224, 224])`` returns, like the official model,
    the region logits (in ``aus.region_order``) then the AU scores, each
    ``[B*T, n]``."""

    def __init__(self, dataset: str = "BP4D", backbone: str = "resnet"):
        super().__init__()
        self.aus = au_set(dataset)
        self.dataset, self.backbone = dataset, backbone
        self.Backbone = build_backbone(backbone)
        self.global_linear = LinearBlock(self.Backbone.num_features, FEATURE_DIM)
        self.MFD = MultiscaleFacialDynamic(self.Backbone.tap_channels)
        self.LRM = LocalRelationshipModeling(self.aus)
        self.CRM = CrossregionRelationshipModeling(self.aus)
        self.TCN = IndividualTemporalModeling(self.aus.num_aus)
        self.node_classifier = NodeClassifier(self.aus.num_aus)
        initialise_like_official(self)

    def forward(self, clips: torch.Tensor):
        B, T = clips.shape[:2]
        tokens, taps = self.Backbone(clips.flatten(0, 1))  # [B*T, 49, C], 4 maps
        x = self.global_linear(tokens) + self.MFD(taps, B, T)  # [B*T, 49, 512]
        return self.relationships(x, B, T)

    def relationships(self, x: torch.Tensor, B: int, T: int):
        """Frame features [B*T, 49, 512] -> region logits then AU scores."""
        region_logits, x = self.LRM(x)  # regions [B*T, k], AU features [B*T, N, 512]
        x = self.CRM(x, region_logits)
        x = self.TCN(x, B, T)
        return (*region_logits, self.node_classifier(x))


def initialise_like_official(model: MDHR) -> None:
    """Random initialisation following the official constructors (without
    their ImageNet weights), so an untrained model computes non-trivial
    scores: He-normal convolutions, LinearBlock fc ~ N(0, 2/out), Xavier for
    the graph attention and the AU prototypes, truncated normal (std 0.02)
    for Swin's linear layers and relative position biases."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
            nn.init.normal_(module.weight, 0.0, (2.0 / fan_out) ** 0.5)
        elif isinstance(module, LinearBlock):
            nn.init.normal_(module.fc.weight, 0.0, (2.0 / module.fc.out_features) ** 0.5)
        elif isinstance(module, nn.Linear) and name.startswith("Backbone."):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, GATConv):
            for weight in (module.linear.weight, module.scoring_fn_target, module.scoring_fn_source):
                nn.init.xavier_uniform_(weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, NodeClassifier):
            nn.init.xavier_uniform_(module.sc)
        if hasattr(module, "relative_position_bias_table"):
            nn.init.trunc_normal_(module.relative_position_bias_table, std=0.02)
