"""Facts about action units for each dataset MDHR is trained on.

This module is the single place that knows AU names, the facial region each
AU belongs to, how a region's classifier encodes its AUs, and which AUs may
exchange messages in the cross-region graph.  Everything else (the model, the
export card, the runtime via the card) derives from it.  It imports no torch.

Encoding of region classes (from the official code): a region with AUs
``a_0 .. a_{n-1}`` (in dataset order) has ``2**n`` classes; class ``c`` says AU
``a_k`` is active when bit ``n-1-k`` of ``c`` is set (most significant bit
first).
"""
from __future__ import annotations

from dataclasses import dataclass

from mdhr.errors import InputError, param

# Rows of the 7x7 backbone grid that each region pools over (top to bottom).
# Regions overlap by one row, as in the official code.
REGION_ROWS = {
    "up": (0, 3),
    "mid": (2, 5),
    "down": (4, 7),
    "down1": (4, 7),
    "down2": (4, 7),
}


@dataclass(frozen=True)
class Region:
    name: str
    rows: tuple[int, int]
    aus: tuple[str, ...]

    @property
    def num_bits(self) -> int:
        return len(self.aus)

    @property
    def num_classes(self) -> int:
        return 2 ** len(self.aus)


@dataclass(frozen=True)
class AUSet:
    """The AUs of one dataset, grouped into facial regions."""

    dataset: str
    au_names: tuple[str, ...]
    au_region: tuple[str, ...]  # region name of each AU, in AU order
    region_order: tuple[str, ...]  # order of region heads in the model's outputs
    # BP4D refines each region's tokens with its own LinearBlock before the
    # region head; DISFA feeds the raw tokens to the heads.
    region_projection: bool

    @property
    def num_aus(self) -> int:
        return len(self.au_names)

    @property
    def regions(self) -> tuple[Region, ...]:
        return tuple(
            Region(name, REGION_ROWS[name],
                   tuple(au for au, r in zip(self.au_names, self.au_region) if r == name))
            for name in self.region_order
        )

    def adjacency(self) -> list[list[int]]:
        """Cross-region AU graph: AUs of different regions are linked, AUs of
        the same region are not (self-loops are added by the model)."""
        return [[int(ri != rj) for rj in self.au_region] for ri in self.au_region]

    def region_class_to_aus(self, region: Region) -> list[list[float]]:
        """[num_classes, num_aus] table: row c marks the AUs that class c of
        ``region`` declares active (the bit decoding of the official dec2bin,
        placed at each AU's position)."""
        table = []
        for c in range(region.num_classes):
            row = [0.0] * self.num_aus
            for k, au in enumerate(region.aus):
                if (c >> (region.num_bits - 1 - k)) & 1:
                    row[self.au_names.index(au)] = 1.0
            table.append(row)
        return table


BP4D = AUSet(
    dataset="BP4D",
    au_names=("AU01", "AU02", "AU04", "AU06", "AU07", "AU10",
              "AU12", "AU14", "AU15", "AU17", "AU23", "AU24"),
    au_region=("up", "up", "up", "mid", "up", "down2",
               "down1", "down1", "down1", "down2", "down2", "down2"),
    region_order=("up", "mid", "down1", "down2"),
    region_projection=True,
)

DISFA = AUSet(
    dataset="DISFA",
    au_names=("AU01", "AU02", "AU04", "AU06", "AU09", "AU12", "AU25", "AU26"),
    au_region=("up", "up", "up", "mid", "mid", "down", "down", "down"),
    region_order=("up", "mid", "down"),
    region_projection=False,
)

AU_SETS = {s.dataset: s for s in (BP4D, DISFA)}

# What each AU is, by its FACS name (Ekman and Friesen's Facial Action Coding
# System), for people reading results: shown beside the codes.
AU_DESCRIPTIONS = {
    "AU01": "inner brow raiser", "AU02": "outer brow raiser", "AU04": "brow lowerer", "AU06": "cheek raiser",
    "AU07": "lid tightener", "AU09": "nose wrinkler", "AU10": "upper lip raiser", "AU12": "lip corner puller",
    "AU14": "dimpler", "AU15": "lip corner depressor", "AU17": "chin raiser", "AU23": "lip tightener",
    "AU24": "lip pressor", "AU25": "lips part", "AU26": "jaw drop",
}


def au_description(name: str) -> str:
    """The FACS name of an AU code (``AU12`` -> ``lip corner puller``); ""
    for a code this table does not hold."""
    return AU_DESCRIPTIONS.get(name, "")
BACKBONES = ("resnet", "swin_transformer")

# The official evaluation thresholds the cosine AU score at 0.5 (no sigmoid).
DECISION_THRESHOLD = 0.5
# ImageNet normalisation used by the official data pipeline.
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
IMAGE_SIZE = 224
CLIP_FRAMES = 16


def au_set(dataset: str) -> AUSet:

    try:
        return AU_SETS[dataset]
    except KeyError:
        raise InputError(
            f"unknown {param('dataset')} {dataset!r}: choose one of {', '.join(AU_SETS)}") from None
