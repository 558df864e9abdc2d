"""Loading local CLIP checkpoints (gscodec/embedding/clip): a tiny random CLIP made here with
open_clip, saved in open_clip's layout (torch and safetensors) and in OpenAI's (a TorchScript
archive with OpenAI's key names and int entries, and its plain state dict); our ViT must give
open_clip's own outputs, and the text side open_clip's text features."""

from __future__ import annotations

import importlib.abc
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gscodec import GscError
from gscodec.embedding import clip
from gscodec.embedding.vit import VitConfig
from tests.conftest import import_beside_torchvision

# vision: 4 x 4 patches, 2 heads of 32 (OpenAI's layout reads 64 // 64 = 1 head); text: OpenAI's
# vocabulary (the tokenizer's), context 16
TINY = {"embed_dim": 32,
        "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}
TEXTS = ["a photo of a cat", "splats", ""]

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def open_clip(tmp_path_factory: pytest.TempPathFactory):
    module = import_beside_torchvision("open_clip")
    folder = tmp_path_factory.mktemp("open_clip_configs")
    (folder / "gsc-tiny.json").write_text(json.dumps(TINY))
    (folder / "gsc-tiny-quickgelu.json").write_text(json.dumps({**TINY, "quick_gelu": True}))
    # what OpenAI's layout reads: QuickGELU, heads of 64
    openai = {**TINY, "quick_gelu": True, "vision_cfg": {**TINY["vision_cfg"], "head_width": 64},
              "text_cfg": {**TINY["text_cfg"], "heads": 1}}
    (folder / "gsc-tiny-openai.json").write_text(json.dumps(openai))
    module.add_model_config(folder)
    return module


@pytest.fixture(scope="module")
def reference(open_clip) -> nn.Module:
    """The tiny CLIP (GELU, 2 heads), random."""
    torch.manual_seed(0)
    model = open_clip.create_model("gsc-tiny").eval()
    with torch.no_grad():
        model.logit_scale.fill_(2.5)
    return model


@pytest.fixture(scope="module")
def files(reference: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("clip")
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    ints = {"input_resolution": torch.tensor(32), "context_length": torch.tensor(16), "vocab_size": torch.tensor(49408)}
    paths = {name: folder / name for name in ("open_clip.pt", "open_clip.safetensors", "wrapped.bin",
                                              "openai_jit.pt", "openai_state.pt")}
    torch.save(state, paths["open_clip.pt"])
    save_file(state, str(paths["open_clip.safetensors"]))
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, paths["wrapped.bin"])
    # OpenAI distributed half-precision TorchScript archives
    torchscript_archive({k: v.half() if v.is_floating_point() else v for k, v in state.items()} | ints,
                        paths["openai_jit.pt"])
    torch.save(state | ints, paths["openai_state.pt"])
    return paths


class Holder(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def torchscript_archive(state: dict[str, torch.Tensor], path: Path) -> None:
    """A scripted module whose state_dict is ``state`` (nested modules for the dotted names)."""
    root = Holder()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        module = root
        for name in parents:
            if name not in module._modules:
                module.add_module(name, Holder())
            module = module._modules[name]
        if value.is_floating_point():
            module.register_parameter(leaf, nn.Parameter(value.clone()))
        else:
            module.register_buffer(leaf, value.clone())
    torch.jit.script(root).save(str(path))


def openai_reference(open_clip, path: Path) -> nn.Module:
    """open_clip's reading of OpenAI's layout. It rounds the weights to half precision, so it is
    the reference for the (half) TorchScript archive; a float32 state dict is compared with
    the same weights in open_clip's model of OpenAI's architecture."""
    if path.name == "openai_jit.pt":
        return open_clip.load_openai_model(str(path), precision="fp32", device="cpu").eval()
    model = open_clip.create_model("gsc-tiny-openai").eval()
    model.load_state_dict({k: v for k, v in torch.load(path).items() if k not in clip.OPENAI_INTS})
    return model


def assert_same_vision(vit, visual: nn.Module) -> None:
    """Our blocks against open_clip's on random tokens, and embed_pixels against its tower."""
    torch.manual_seed(1)
    tokens, images = torch.randn(2, 7, 64), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        theirs = tokens if visual.transformer.batch_first else tokens.transpose(0, 1)
        theirs = visual.transformer(theirs)
        theirs = theirs if visual.transformer.batch_first else theirs.transpose(0, 1)
        torch.testing.assert_close(vit.transformer(tokens), theirs, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(vit.embed_pixels(images), visual(images), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["open_clip.pt", "open_clip.safetensors", "wrapped.bin"])
def test_open_clip_layout(files: dict[str, Path], reference: nn.Module, name: str) -> None:
    vit = clip.load_visual(files[name], heads=2)
    assert not vit.training
    assert vit.config == VitConfig(width=64, layers=2, heads=2, patch_size=8, image_size=32, output_dim=32,
                                        mlp_ratio=4.0, quick_gelu=False)
    assert_same_vision(vit, reference.visual)


@pytest.mark.parametrize("name", ["openai_jit.pt", "openai_state.pt"])
def test_openai_layout(open_clip, files: dict[str, Path], name: str) -> None:
    vit = clip.load_visual(files[name])
    assert vit.config.quick_gelu and vit.config.heads == 1
    assert_same_vision(vit, openai_reference(open_clip, files[name]).visual)


def test_quick_gelu_either_way(open_clip, files: dict[str, Path], reference: nn.Module) -> None:
    """The weights cannot tell: each layout's default can be overridden."""
    assert_same_vision(clip.load_visual(files["openai_state.pt"], quick_gelu=False, heads=2), reference.visual)
    quick = open_clip.create_model("gsc-tiny-quickgelu").eval()
    quick.load_state_dict(reference.state_dict())
    vit = clip.load_visual(files["open_clip.pt"], quick_gelu=True, heads=2)
    assert_same_vision(vit, quick.visual)
    with torch.no_grad():
        images = torch.randn(1, 3, 32, 32)
        assert not torch.allclose(vit.embed_pixels(images), reference.visual(images), atol=1e-4)


def normalised(features: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(features, dim=-1).numpy()


def test_text(open_clip, files: dict[str, Path], reference: nn.Module) -> None:
    tokens = open_clip.get_tokenizer("gsc-tiny")(TEXTS)
    with torch.no_grad():
        expected = reference.encode_text(tokens)
    for name in ("open_clip.pt", "open_clip.safetensors", "openai_state.pt"):  # arch= reads either layout
        text = clip.load_text(files[name], arch="gsc-tiny")
        torch.testing.assert_close(text.encode(TEXTS), expected, atol=1e-5, rtol=1e-5)
    assert text.logit_scale == pytest.approx(np.exp(2.5))
    embedded = clip.encode_text(TEXTS, files["open_clip.pt"], arch="gsc-tiny")
    assert embedded.dtype == np.float32 and embedded.shape == (3, 32)
    np.testing.assert_allclose(embedded, normalised(expected), atol=1e-5)
    # OpenAI's layout: no arch needed, QuickGELU and one head as open_clip builds it
    openai = openai_reference(open_clip, files["openai_jit.pt"])
    with torch.no_grad():
        expected = openai.encode_text(tokens)
    for _ in range(2):  # the second from the cache
        np.testing.assert_allclose(clip.encode_text(TEXTS, files["openai_jit.pt"]), normalised(expected), atol=1e-5)
    text = clip.load_text(files["openai_jit.pt"], arch="gsc-tiny-openai")
    torch.testing.assert_close(text.encode(TEXTS), expected, atol=1e-5, rtol=1e-5)


def test_errors(files: dict[str, Path], reference: nn.Module, tmp_path: Path) -> None:
    state = reference.state_dict()
    with pytest.raises(GscError, match="no CLIP checkpoint"):
        clip.load_visual(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(GscError, match="cannot read"):
        clip.load_visual(tmp_path / "junk.pt")
    cases = {
        "text_only.pt": ({k: v for k, v in state.items() if not k.startswith("visual.")}, "no CLIP ViT visual"),
        "resnet.pt": ({"visual.layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1)} | state, "ResNet"),
        "layer_scale.pt": (state | {"visual.transformer.resblocks.0.ls_1.gamma": torch.ones(64)}, "ls_1"),
        "shapes.pt": (state | {"visual.ln_pre.weight": torch.ones(65)}, "ln_pre.weight"),
    }
    for name, (tensors, message) in cases.items():
        torch.save(tensors, tmp_path / name)
        with pytest.raises(GscError, match=message):
            clip.load_visual(tmp_path / name)
    with pytest.raises(GscError, match="multiple of 3 heads"):
        clip.load_visual(files["open_clip.pt"], heads=3)


def test_text_errors(open_clip, files: dict[str, Path], reference: nn.Module, tmp_path: Path) -> None:
    torch.save({k: v for k, v in reference.state_dict().items() if k.startswith("visual.")}, tmp_path / "visual.pt")
    with pytest.raises(GscError, match="no CLIP text tower"):
        clip.load_text(tmp_path / "visual.pt", arch="gsc-tiny")
    with pytest.raises(GscError, match="pass arch="):
        clip.load_text(files["open_clip.pt"])
    with pytest.raises(GscError, match="no model named"):
        clip.load_text(files["open_clip.pt"], arch="gsc-none")
    with pytest.raises(GscError, match="Hugging Face"):
        clip.load_text(files["open_clip.pt"], arch="ViT-B-16-SigLIP")
    state = reference.state_dict()
    torch.save({k: v for k, v in state.items() if k != "ln_final.weight"}, tmp_path / "part.pt")
    with pytest.raises(GscError, match="does not fit open_clip's gsc-tiny: missing .'ln_final.weight'"):
        clip.load_text(tmp_path / "part.pt", arch="gsc-tiny")
    torch.save(state | {"ln_final.weight": torch.ones(65)}, tmp_path / "shapes.pt")
    with pytest.raises(GscError, match="(?s)does not fit open_clip's gsc-tiny.*ln_final.weight"):
        clip.load_text(tmp_path / "shapes.pt", arch="gsc-tiny")


class Broken(importlib.abc.MetaPathFinder):
    """An open_clip whose torchvision does not match torch."""

    def find_spec(self, name, path, target=None):
        if name == "open_clip":
            raise RuntimeError("operator torchvision::nms does not exist")
        return None


def test_without_open_clip(open_clip, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(GscError, match=r"gscodec\[clip\]"):
        clip.load_text(files["open_clip.pt"], arch="gsc-tiny")
    monkeypatch.delitem(sys.modules, "open_clip")
    monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])
    with pytest.raises(GscError, match="torchvision"):
        clip.load_text(files["open_clip.pt"], arch="gsc-tiny")
    assert clip.load_visual(files["open_clip.pt"], heads=2)  # the visual side needs no open_clip
