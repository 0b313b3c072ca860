"""The two image backbones of MDHR, each returning its last feature map as
tokens plus four multi-scale taps for the facial-dynamics branch.

Module and attribute names follow the official checkpoints (torchvision-style
ResNet, Microsoft's Swin), so their state dicts load unchanged.
"""
from __future__ import annotations

import torch
import torch.nn as nn


# ----------------------------------------------------------------- ResNet-50
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != out_planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ResNet50(nn.Module):
    """ResNet-50 without its classifier; taps after layer1..layer4."""

    # channels of the four taps: 256@56x56, 512@28x28, 1024@14x14, 2048@7x7
    tap_channels = (256, 512, 1024, 2048)
    num_features = 2048

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_planes = 64
        for i, (planes, blocks, stride) in enumerate(
                [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1):
            layer = []
            for b in range(blocks):
                layer.append(Bottleneck(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes * Bottleneck.expansion
            setattr(self, f"layer{i}", nn.Sequential(*layer))

    def forward(self, x: torch.Tensor):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # [N, 64, 56, 56]
        taps = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            taps.append(x)
        tokens = x.flatten(2).transpose(1, 2)  # [N, 49, 2048]
        return tokens, taps


# ------------------------------------------------------------------- Swin-B
def window_partition(x: torch.Tensor, size: int) -> torch.Tensor:
    """[N, H, W, C] -> [N * H/size * W/size, size*size, C]"""
    n, h, w, c = x.shape
    x = x.view(n, h // size, size, w // size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, size * size, c)


def window_merge(windows: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    """Inverse of window_partition: -> [N, H, W, C]"""
    c = windows.shape[-1]
    x = windows.view(-1, h // size, w // size, size, size, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def relative_position_index(size: int) -> torch.Tensor:
    """[size^2, size^2] index into the (2*size-1)^2 relative-bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij"))
    coords = coords.flatten(1)  # [2, size^2]
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (size - 1)
    return rel[..., 0] * (2 * size - 1) + rel[..., 1]


def shifted_window_mask(resolution: int, size: int, shift: int) -> torch.Tensor:
    """[windows, size^2, size^2] additive mask (0 or -100) that stops attention
    between pixels the cyclic shift brought together from distant places."""
    label = torch.zeros(1, resolution, resolution, 1)
    bands = (slice(0, -size), slice(-size, -shift), slice(-shift, None))
    for i, hs in enumerate(bands):
        for j, ws in enumerate(bands):
            label[:, hs, ws, :] = 3 * i + j
    windows = window_partition(label, size).squeeze(-1)  # [nW, size^2]
    differ = windows.unsqueeze(1) != windows.unsqueeze(2)
    return torch.where(differ, torch.tensor(-100.0), torch.tensor(0.0))


class WindowAttention(nn.Module):
    def __init__(self, dim: int, size: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * size - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(size))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n, tokens, c = x.shape  # n = windows * batch
        qkv = self.qkv(x).view(n, tokens, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]  # [n, heads, tokens, c/heads]
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(tokens, tokens, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attn = attn.view(-1, windows, self.heads, tokens, tokens) + mask.unsqueeze(1)
            attn = attn.view(n, self.heads, tokens, tokens)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(n, tokens, c)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, resolution: int, heads: int, window: int, shift: int):
        super().__init__()
        if resolution <= window:  # one window covers the map: nothing to shift
            window, shift = resolution, 0
        self.resolution, self.window, self.shift = resolution, window, shift
        mask = shifted_window_mask(resolution, window, shift) if shift else None
        self.register_buffer("attn_mask", mask)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, tokens, c = x.shape
        r, s = self.resolution, self.shift
        y = self.norm1(x).view(n, r, r, c)
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        y = self.attn(window_partition(y, self.window), self.attn_mask)
        y = window_merge(y, self.window, r, r)
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        x = x + y.reshape(n, tokens, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbourhood -> one token: halves resolution, doubles channels."""

    def __init__(self, dim: int, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, c = x.shape
        r = self.resolution
        x = x.view(n, r, r, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(n, -1, 4 * c)))


class SwinStage(nn.Module):
    def __init__(self, dim: int, resolution: int, depth: int, heads: int, window: int, merge: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, heads, window, 0 if i % 2 == 0 else window // 2)
            for i in range(depth))
        self.downsample = PatchMerging(dim, resolution) if merge else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int = 4):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))  # [N, 56*56, dim]


class SwinB(nn.Module):
    """Swin-B (patch 4, window 7, embed 128, depths 2-2-18-2) without its
    classifier; taps are the inputs of the four stages."""

    # channels of the four taps (as tokens): 128@56x56, 256@28x28, 512@14x14, 1024@7x7
    tap_channels = (128, 256, 512, 1024)
    num_features = 1024

    def __init__(self, embed: int = 128, depths=(2, 2, 18, 2), heads=(4, 8, 16, 32), window: int = 7):
        super().__init__()
        self.patch_embed = PatchEmbed(embed)
        self.layers = nn.ModuleList(
            SwinStage(embed * 2 ** i, 56 // 2 ** i, depth, h, window, merge=i < len(depths) - 1)
            for i, (depth, h) in enumerate(zip(depths, heads)))
        self.norm = nn.LayerNorm(embed * 2 ** (len(depths) - 1))

    def forward(self, x: torch.Tensor):
        x = self.patch_embed(x)
        taps = []
        for stage in self.layers:
            taps.append(x)
            x = stage(x)
        tokens = self.norm(x)  # [N, 49, 1024]
        # taps as feature maps [N, C, H, W], like ResNet's
        maps = [t.transpose(1, 2).unflatten(2, (56 // 2 ** i, 56 // 2 ** i)) for i, t in enumerate(taps)]
        return tokens, maps


def build_backbone(name: str) -> nn.Module:
    return {"resnet": ResNet50, "swin_transformer": SwinB}[name]()
