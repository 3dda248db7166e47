"""Embedding networks: a backbone, a linear head and optional L2 normalisation.

f(x) = normalize(W · g(x) + b), with g the pooled backbone feature (Roth et al., ICML 2020, Sec. 4:
ResNet50, frozen BatchNorm, 128-d normalised embedding). Archs (registry ``ARCHS``):

- ``mlp``: the diagonal-lines toy, 2 → 30 → ReLU → 30 → ReLU (input (B, 2); in_channels ignored).
- ``small_cnn``: a stride-2 stem and three conv-BN-ReLU-maxpool blocks (32/64/128/256 channels)
  and global average pooling, for 64×64 glyphs on a CPU (about 0.4 M parameters).
- ``resnet18`` / ``resnet50``: torchvision ResNets (3 input channels), ``fc`` removed.

``frozen_bn=True`` keeps every BatchNorm's running statistics fixed while its affine parameters
train. Pretrained weights never trigger a download (see ``build_model``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from dml_core.registry import Registry

ARCHS = Registry("arch")

# Torchvision's original ImageNet weights (the ones the paper's ResNet50 used).
IMAGENET_WEIGHTS = {
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
}
# Keys of the ImageNet classifier that the embedding head replaces.
CLASSIFIER_PREFIX = "fc."


@ARCHS.register("mlp")
def mlp_backbone(in_channels: int) -> tuple[nn.Module, int]:
    """The toy's network without its output layer: 2 → 30 → ReLU → 30 → ReLU."""
    return nn.Sequential(nn.Linear(2, 30), nn.ReLU(), nn.Linear(30, 30), nn.ReLU()), 30


@ARCHS.register("small_cnn")
def small_cnn_backbone(in_channels: int) -> tuple[nn.Module, int]:
    """A stride-2 conv5×5-BN-ReLU stem (32 channels), three conv3×3-BN-ReLU-maxpool2 blocks (64, 128,
    256 channels), then global average pooling.

    The strided stem replaces a full-resolution conv + max-pool: on a 2-core CPU that first block
    cost about half the forward time at 64×64 (measured in bench/train_bench.py history).
    """
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, 32, kernel_size=5, stride=2, padding=2, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(inplace=True),
    ]
    channels = 32
    for width in (64, 128, 256):
        layers += [
            nn.Conv2d(channels, width, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        channels = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), channels


def resnet_backbone(
    factory: Callable[..., torchvision.models.ResNet],
) -> Callable[[int], tuple[nn.Module, int]]:
    def build(in_channels: int) -> tuple[nn.Module, int]:
        if in_channels != 3:
            raise ValueError(
                f"ResNet backbones take 3 input channels, got in_channels={in_channels}; "
                "repeat a grayscale channel three times in the transform"
            )
        network = factory(weights=None)
        feature_dim = network.fc.in_features
        network.fc = nn.Identity()
        return network, feature_dim

    return build


ARCHS.register("resnet18")(resnet_backbone(torchvision.models.resnet18))
ARCHS.register("resnet50")(resnet_backbone(torchvision.models.resnet50))


class EmbeddingModel(nn.Module):
    """backbone → Linear(feature_dim, embed_dim) → optional L2 normalisation.

    ``frozen_bn``: ``train()`` puts every BatchNorm back into eval mode, so running statistics stay
    fixed while the affine weights still receive gradients.
    """

    def __init__(
        self,
        arch: str,
        backbone: nn.Module,
        feature_dim: int,
        embed_dim: int,
        *,
        normalize: bool = True,
        frozen_bn: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.embed_dim = embed_dim
        self.feature_dim = feature_dim
        self.normalize = normalize
        self.frozen_bn = frozen_bn
        self.in_channels = in_channels
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, embed_dim)
        self.train()

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        """Pooled backbone feature g(x), shape (B, feature_dim)."""
        return self.backbone(inputs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Embedding W·g(x) + b, divided by its L2 norm (eps 1e-12) when ``normalize``."""
        embeddings = self.head(self.features(inputs))
        return F.normalize(embeddings, dim=1) if self.normalize else embeddings

    def train(self, mode: bool = True) -> EmbeddingModel:
        super().train(mode)
        if mode and self.frozen_bn:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def config(self) -> dict[str, Any]:
        """Keyword arguments of ``build_model`` that rebuild this architecture (weights aside)."""
        return {
            "arch": self.arch,
            "embed_dim": self.embed_dim,
            "normalize": self.normalize,
            "frozen_bn": self.frozen_bn,
            "in_channels": self.in_channels,
        }


def build_model(
    arch: str,
    embed_dim: int,
    *,
    pretrained: str | bool | None = None,
    frozen_bn: bool = False,
    normalize: bool = True,
    in_channels: int = 3,
) -> EmbeddingModel:
    """Build ``arch`` with an ``embed_dim`` head.

    ``pretrained``: None/False → random init; ``"imagenet"``/True → torchvision's ImageNet weights,
    read only from the torch hub cache (``$TORCH_HOME/hub/checkpoints``), never downloaded; a path
    → a backbone state dict from ``.safetensors`` or ``.pth``/``.pt`` (``weights_only`` loading).
    The head is always freshly initialised.
    """
    if embed_dim < 1:
        raise ValueError(f"embed_dim must be >= 1, got {embed_dim}")
    backbone, feature_dim = ARCHS.build(arch, in_channels)
    if pretrained is True or pretrained == "imagenet":
        load_backbone_weights(backbone, imagenet_weights_file(arch))
    elif pretrained:
        load_backbone_weights(backbone, Path(pretrained))
    return EmbeddingModel(
        arch,
        backbone,
        feature_dim,
        embed_dim,
        normalize=normalize,
        frozen_bn=frozen_bn,
        in_channels=in_channels,
    )


def imagenet_weights_file(arch: str) -> Path:
    """Path of the cached ImageNet weight file for ``arch``; a clear error if it is not there."""
    if arch not in IMAGENET_WEIGHTS:
        raise ValueError(
            f"no ImageNet weights for arch {arch!r}; available for {sorted(IMAGENET_WEIGHTS)}"
        )
    url = IMAGENET_WEIGHTS[arch].url
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not path.is_file():
        raise FileNotFoundError(
            f"ImageNet weights for {arch} are not in the torch hub cache and are never downloaded "
            f"automatically. Download {url} yourself and place it at {path} "
            "(or set TORCH_HOME, or pass pretrained=/path/to/weights)."
        )
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or ``.pth``/``.pt`` file, never through unrestricted pickle."""
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception:  # empty, truncated or not safetensors
            raise ValueError(f"{path} is not a readable .safetensors file of tensors") from None
    if path.suffix in (".pth", ".pt"):
        from dml_core.io import load_plain_torch_file

        state = load_plain_torch_file(path, "pretrained weights (a state dict of tensors)")
        if isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values()):
            return state
        raise ValueError(f"{path} does not hold a flat state dict of tensors")
    raise ValueError(f"pretrained weights must be .safetensors, .pth or .pt, got {path}")


def load_backbone_weights(backbone: nn.Module, path: Path) -> None:
    """Load a state dict into the backbone; ImageNet ``fc.*`` keys are dropped, any other
    mismatch raises ``ValueError`` naming the keys."""
    state = {
        key: value
        for key, value in read_state_dict(path).items()
        if not key.startswith(CLASSIFIER_PREFIX)
    }
    try:
        result = backbone.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches raise even with strict=False
        raise ValueError(f"{path} does not fit the backbone: {error}") from error
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{path} does not fit the backbone: missing keys {result.missing_keys[:8]}"
            f"{' …' if len(result.missing_keys) > 8 else ''}, unexpected keys "
            f"{result.unexpected_keys[:8]}{' …' if len(result.unexpected_keys) > 8 else ''}"
        )
