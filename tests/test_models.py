"""Embedding models: shapes, normalisation, frozen BatchNorm, weight loading, rebuild from config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dml_core.models import ARCHS, build_model

SLOW_ARCHS = {"resnet50"}
INPUTS = {
    "mlp": (4, 2),
    "small_cnn": (4, 1, 64, 64),
    "resnet18": (2, 3, 64, 64),
    "resnet50": (2, 3, 64, 64),
}
FEATURE_DIMS = {"mlp": 30, "small_cnn": 256, "resnet18": 512, "resnet50": 2048}
IN_CHANNELS = {"mlp": 3, "small_cnn": 1, "resnet18": 3, "resnet50": 3}


def test_every_registered_arch_is_tested() -> None:
    assert sorted(ARCHS) == sorted(INPUTS)


@pytest.mark.parametrize(
    "arch",
    [pytest.param(a, marks=pytest.mark.slow) if a in SLOW_ARCHS else a for a in sorted(INPUTS)],
)
@pytest.mark.parametrize("normalize", [True, False])
def test_output_shapes_and_normalisation(arch: str, normalize: bool) -> None:
    torch.manual_seed(0)
    model = build_model(arch, 16, normalize=normalize, in_channels=IN_CHANNELS[arch]).eval()
    inputs = torch.randn(INPUTS[arch])
    with torch.no_grad():
        embeddings, features = model(inputs), model.features(inputs)
    assert embeddings.shape == (len(inputs), 16)
    assert features.shape == (len(inputs), FEATURE_DIMS[arch]) == (len(inputs), model.feature_dim)
    norms = embeddings.norm(dim=1)
    if normalize:
        torch.testing.assert_close(norms, torch.ones_like(norms))
    else:
        assert not torch.allclose(norms, torch.ones_like(norms), atol=1e-3)
        torch.testing.assert_close(embeddings, model.head(features))


def test_normalisation_is_safe_for_a_zero_embedding() -> None:
    model = build_model("mlp", 4)
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    assert torch.isfinite(model(torch.randn(3, 2))).all()


def test_small_cnn_stays_under_a_million_parameters() -> None:
    model = build_model("small_cnn", 128, in_channels=1)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000


def test_frozen_batchnorm_keeps_running_stats_but_trains_affine_weights() -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", 8, frozen_bn=True, in_channels=1)
    batch_norm = model.backbone[1]
    assert isinstance(batch_norm, torch.nn.BatchNorm2d)
    running_mean = batch_norm.running_mean.clone()
    weight = batch_norm.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    model.eval().train()  # train() must re-freeze the BatchNorms every time
    assert model.training and not batch_norm.training
    loss = model(3 * torch.randn(4, 1, 64, 64) + 1).sum(dim=0)[0]
    loss.backward()
    assert batch_norm.weight.grad is not None and batch_norm.weight.grad.abs().sum() > 0
    optimizer.step()
    torch.testing.assert_close(batch_norm.running_mean, running_mean)
    assert not torch.equal(batch_norm.weight.detach(), weight)


def test_unfrozen_batchnorm_updates_running_stats() -> None:
    model = build_model("small_cnn", 8, frozen_bn=False, in_channels=1).train()
    running_mean = model.backbone[1].running_mean.clone()
    model(3 * torch.randn(4, 1, 64, 64) + 1)
    assert not torch.allclose(model.backbone[1].running_mean, running_mean)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_pretrained_backbone_from_a_local_file_round_trips(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(1)
    source = build_model("resnet18", 8)
    state = {k: v.contiguous() for k, v in source.backbone.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 512)  # an ImageNet classifier is ignored
    state["fc.bias"] = torch.zeros(1000)
    path = tmp_path / f"backbone{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    torch.manual_seed(2)
    loaded = build_model("resnet18", 8, pretrained=str(path))
    for key, value in source.backbone.state_dict().items():
        torch.testing.assert_close(loaded.backbone.state_dict()[key], value, rtol=0, atol=0)
    assert not torch.equal(loaded.head.weight, source.head.weight)  # the head stays fresh


def test_pretrained_file_that_does_not_fit_names_the_keys(tmp_path: Path) -> None:
    state = build_model("small_cnn", 8, in_channels=1).backbone.state_dict()
    state["extra.weight"] = torch.zeros(3)
    del state["0.weight"]
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(ValueError, match=r"missing keys \['0.weight'\].*extra.weight"):
        build_model("small_cnn", 8, in_channels=1, pretrained=str(path))
    with pytest.raises(ValueError, match="does not fit"):
        build_model("resnet18", 8, pretrained=str(path))
    with pytest.raises(FileNotFoundError):
        build_model("small_cnn", 8, pretrained=str(tmp_path / "absent.pt"))
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"\.safetensors, \.pth or \.pt"):
        build_model("small_cnn", 8, pretrained=str(tmp_path / "weights.bin"))


def test_missing_imagenet_cache_says_where_to_put_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    with pytest.raises(FileNotFoundError) as error:
        build_model("resnet50", 8, pretrained="imagenet")
    message = str(error.value)
    assert str(expected) in message
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message
    assert not expected.exists()
    with pytest.raises(ValueError, match="no ImageNet weights"):
        build_model("small_cnn", 8, pretrained=True)


def test_imagenet_weights_load_from_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(3)
    source = build_model("resnet18", 8)
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(source.backbone.state_dict(), cached)
    loaded = build_model("resnet18", 8, pretrained=True)
    torch.testing.assert_close(loaded.backbone.conv1.weight, source.backbone.conv1.weight)


def test_unknown_arch_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="mlp, resnet18, resnet50, small_cnn"):
        build_model("vgg", 8)
    with pytest.raises(ValueError, match="3 input channels"):
        build_model("resnet18", 8, in_channels=1)


@pytest.mark.parametrize("arch", ["mlp", "small_cnn", "resnet18"])
def test_config_rebuilds_an_identical_model(arch: str) -> None:
    model = build_model(arch, 12, frozen_bn=True, normalize=False, in_channels=IN_CHANNELS[arch])
    config = model.config()
    rebuilt = build_model(**config)
    assert rebuilt.config() == config
    rebuilt.load_state_dict(model.state_dict())  # strict: same keys and shapes
    inputs = torch.randn(INPUTS[arch])
    model.train()
    rebuilt.train()  # frozen BN: train mode is deterministic and leaves stats untouched
    torch.testing.assert_close(rebuilt(inputs), model(inputs), rtol=0, atol=0)


def test_channels_last_gives_the_same_embeddings() -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", 8).eval()
    inputs = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(inputs)
        model = model.to(memory_format=torch.channels_last)
        actual = model(inputs.contiguous(memory_format=torch.channels_last))
    assert model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
