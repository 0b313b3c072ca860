"""Checkpoint layouts of the official training code, and refusals."""
import builtins
import os
import socket

import pytest
import torch

import mdhr
from mdhr.errors import MDHRError

# Exports or runs the full model: the slow tier.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def disfa_resnet():
    torch.manual_seed(1)
    return mdhr.build_model("DISFA", "resnet")


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


LAYOUTS = {
    "bare": lambda sd: sd,
    "wrapped": lambda sd: {"epoch": 3, "state_dict": sd, "optimizer": {"state": {}, "param_groups": []}},
    "dataparallel": lambda sd: {k if k.startswith("module.") else "module." + k: v for k, v in sd.items()},
    "wrapped-dataparallel": lambda sd: {"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()},
                                        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}},
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_official_layouts_load_and_infer_config(tmp_path, disfa_resnet, layout):
    path = tmp_path / "ckpt.pth"
    torch.save(LAYOUTS[layout](disfa_resnet.state_dict()), path)
    model = mdhr.load_model(path)
    assert (model.dataset, model.backbone) == ("DISFA", "resnet")
    assert not model.training
    assert same_weights(model, disfa_resnet)


def test_swin_bp4d_inferred(tmp_path):
    path = tmp_path / "swin.pth"
    torch.save({"state_dict": mdhr.build_model("BP4D", "swin_transformer").state_dict()}, path)
    model = mdhr.load_model(path, dataset="BP4D", backbone="swin_transformer")
    assert (model.dataset, model.backbone) == ("BP4D", "swin_transformer")


@pytest.fixture
def disfa_path(tmp_path, disfa_resnet):
    path = tmp_path / "disfa.pth"
    torch.save(disfa_resnet.state_dict(), path)
    return path


def test_wrong_dataset_is_named(disfa_path):
    with pytest.raises(MDHRError, match=r"checkpoint has 8 AU classifiers \(DISFA\), but dataset BP4D was asked"):
        mdhr.load_model(disfa_path, dataset="BP4D")
    with pytest.raises(MDHRError, match="disfa.pth"):
        mdhr.load_model(disfa_path, backbone="swin_transformer")


def test_missing_and_corrupt_files(tmp_path, disfa_path):
    with pytest.raises(MDHRError, match="no such checkpoint"):
        mdhr.load_model(tmp_path / "nope.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(disfa_path.read_bytes()[:100000])
    with pytest.raises(MDHRError, match="not a PyTorch checkpoint"):
        mdhr.load_model(truncated)
    for name, content in (("notes.pth", b"epoch 3\nloss 0.25\n"), ("noise.pth", bytes(range(256)) * 16),
                          ("config.pth", b'{"lr": 0.0001}')):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(MDHRError, match=r"not a PyTorch checkpoint \(torch.load cannot read it"):
            mdhr.load_model(tmp_path / name)
    other = tmp_path / "other.pth"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(MDHRError, match="does not look like an MDHR checkpoint"):
        mdhr.load_model(other)


def test_damaged_state_dict_names_the_key(tmp_path, disfa_resnet):
    state = dict(disfa_resnet.state_dict())
    del state["MFD.conv2.bias"]
    path = tmp_path / "damaged.pth"
    torch.save(state, path)
    with pytest.raises(MDHRError, match="1 missing keys \\(first: MFD.conv2.bias\\)"):
        mdhr.load_model(path)


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_checkpoint_carrying_code_is_refused_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": RunsCode(str(marker))}, path)
    with pytest.raises(MDHRError, match="refused to load"):
        mdhr.load_model(path)
    assert not marker.exists()


def test_build_model_reads_and_downloads_nothing(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError(f"build_model touched a file or the network: {args[:1]}")

    import mdhr.loading  # noqa: F401  (imports done before the ban)
    monkeypatch.setattr(builtins, "open", forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)
    model = mdhr.build_model("BP4D", "swin_transformer")
    assert not model.training


def test_unknown_names_are_user_errors():
    with pytest.raises(MDHRError, match="unknown dataset"):
        mdhr.build_model("CK+", "resnet")
    with pytest.raises(MDHRError, match="unknown backbone"):
        mdhr.build_model("BP4D", "vgg")
