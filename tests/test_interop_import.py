"""Importing checkpoints trained elsewhere: the paper's official format (through the restricted
unpickler), plain state dicts, the key-mapping report, and pickles that try to run code."""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from dml_core.config import TrainConfig
from dml_core.engine.checkpoint import load_checkpoint
from dml_core.engine.checkpoint_header import read_metadata
from dml_core.interop import UnsafePickleError, import_checkpoint, load_restricted
from dml_core.interop.official import official_config_values
from dml_core.models import build_model


class Progress_Saver:
    """Stands in for the official code's logger class, pickled by reference to this module."""

    def __init__(self) -> None:
        self.groups = {"Recall @ 1": {"e_recall@1": {"content": [np.float64(0.61), 0.63]}}}


class OfficialResNet50(nn.Module):
    """The official code's network layout: ``model`` is a ResNet50 whose classifier is called
    ``last_linear`` (and is the embedding layer), plus ``layer_blocks`` referring to layer1…4."""

    def __init__(self, opt: argparse.Namespace) -> None:
        super().__init__()
        self.pars = opt
        self.model = torchvision.models.resnet50(weights=None)
        del self.model.fc
        self.model.last_linear = nn.Linear(2048, opt.embed_dim)
        if "frozen" in opt.arch:
            for module in self.model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        self.layer_blocks = nn.ModuleList(
            [self.model.layer1, self.model.layer2, self.model.layer3, self.model.layer4]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        for block in self.layer_blocks:
            x = block(x)
        x = m.last_linear(m.avgpool(x).flatten(1))
        return nn.functional.normalize(x, dim=-1) if "normalize" in self.pars.arch else x


def official_opt() -> argparse.Namespace:
    return argparse.Namespace(
        arch="resnet50_frozen_normalize",
        embed_dim=128,
        dataset="cub200",
        loss="margin",
        batch_mining="distance",
        bs=112,
        lr=1e-05,
        n_epochs=150,
        seed=3,
        samples_per_class=2,
        source_path="/data/cub200",
        evaluation_metrics=["e_recall@1", "nmi"],
        device=torch.device("cuda"),
        wandb_key="not-a-real-key",
        epoch=42,
    )


@pytest.mark.slow
def test_official_checkpoint_imports_and_embeds_like_the_original(tmp_path: Path) -> None:
    torch.manual_seed(0)
    opt = official_opt()
    opt.batch_mining, opt.miner_rho_distance_cp = "rho_distance", 0.35
    network = OfficialResNet50(opt).eval()
    source = tmp_path / "checkpoint_Test_e_recall@1.pth.tar"
    torch.save(
        {
            "state_dict": network.state_dict(),
            "opt": opt,
            "progress": {"Train": Progress_Saver()},
            "aux": None,
        },
        source,
    )
    result = import_checkpoint(source, tmp_path / "imported.safetensors")

    model, metadata = load_checkpoint(tmp_path / "imported.safetensors")
    inputs = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(inputs), network(inputs), atol=1e-5)
    assert model.frozen_bn and model.normalize and model.arch == "resnet50"
    assert metadata["model"]["embed_dim"] == 128
    config = metadata["config"]
    assert (config["dataset"], config["loss"], config["seed"]) == ("cub200", "margin", 3)
    assert config["data_root"] == "/data/cub200" and config["pretrained"] is None
    origin = metadata["source"]
    assert origin["format"] == "official" and origin["file"] == source.name
    assert origin["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert origin["opt"]["arch"] == "resnet50_frozen_normalize"
    assert origin["opt"]["device"] == "cuda" and origin["opt"]["wandb_key"] == "<redacted>"
    assert metadata["epoch"] == 42 and metadata["kind"] == "imported"
    mapping = origin["key_mapping"]
    assert mapping["matched"] == len(model.state_dict())
    assert mapping["missing"] == [] and mapping["unexpected"] == []
    assert all(key.startswith("layer_blocks.") for key in mapping["ignored"])
    assert result.summary()["keys"]["matched"] == mapping["matched"]
    assert (config["miner"], config["rho"]) == ("distance", 0.35)  # rho_distance, cp 0.35
    assert origin["opt"]["batch_mining"] == "rho_distance"
    from app.analysis import best_result_rows

    shown = {row[""]: row["value"] for row in best_result_rows(metadata["best"])}
    assert set(shown.values()) == {"not recorded"} and len(shown) == 3


def test_official_opt_maps_every_field_with_a_counterpart() -> None:
    """Values chosen away from every default, so a field that is not mapped shows."""
    opt = vars(official_opt()) | {
        "batch_mining": "rho_distance",
        "miner_rho_distance_cp": 0.4,
        "miner_rho_distance_lower_cutoff": 0.6,
        "miner_distance_lower_cutoff": 0.9,
        "loss_margin_margin": 0.25,
        "loss_margin_beta": 1.1,
        "loss_margin_beta_lr": 0.002,
        "loss_triplet_margin": 0.7,
        "decay": 0.001,
        "optim": "sgd",
        "kernels": 3,
        "scheduler": "step",
        "tau": [40, 80],
        "gamma": 0.5,
        "use_tv_split": True,
        "tv_split_by_samples": False,
        "tv_split_perc": 0.75,
        "storage_metrics": ["e_recall@2"],
        "data_sampler": "class_random",
        "seed": 0,
    }
    values, unmapped = official_config_values(opt)
    config = TrainConfig.from_dict(values)
    assert (config.loss, config.miner, config.rho) == ("margin", "distance", 0.4)
    assert config.miner_options == {"lower_cutoff": 0.6}  # rho_distance's own cut-off
    assert config.loss_options == {"margin": 0.25, "beta": 1.1}  # not triplet's margin
    assert config.loss_lr == 0.002
    assert (config.dataset, config.data_root) == ("cub200", "/data/cub200")
    assert (config.batch_size, config.samples_per_class, config.epochs) == (112, 2, 150)
    assert (config.lr, config.weight_decay, config.optimizer) == (1e-05, 0.001, "sgd")
    assert (config.scheduler, config.lr_milestones, config.lr_gamma) == ("step", [40, 80], 0.5)
    assert (config.seed, config.num_workers, config.val_classes) == (0, 3, 0.25)
    assert config.best_metric == "recall@2" and config.sampler == "class_random"
    assert unmapped == {}

    plain, _ = official_config_values(opt | {"batch_mining": "distance"})
    assert (plain["miner"], plain["rho"], plain["miner_options"]) == (
        "distance",
        0.0,
        {"lower_cutoff": 0.9},
    )
    softmax, _ = official_config_values(opt | {"loss": "softmax", "loss_softmax_lr": 3e-4})
    assert (softmax["miner"], softmax["rho"], softmax["loss_lr"]) == (None, 0.0, 3e-4)
    other, unmapped = official_config_values(opt | {"batch_mining": "parametric"})
    assert unmapped == {"batch_mining": "parametric"} and other["miner"] == "distance"
    _, unmapped = official_config_values(opt | {"loss": "moco"})
    assert unmapped == {"loss": "moco"}


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_restricted_reader_keeps_unknown_classes_inert(tmp_path: Path, zip_format: bool) -> None:
    """Both torch.save formats: the zip archive (torch >= 1.6) and the older single stream."""
    path = tmp_path / "small.pth"
    layer = nn.Linear(3, 2)
    torch.save(
        {
            "state_dict": layer.state_dict(),
            "opt": official_opt(),
            "progress": {"Train": Progress_Saver()},
        },
        path,
        _use_new_zipfile_serialization=zip_format,
    )
    loaded = load_restricted(path)
    assert isinstance(loaded["opt"], argparse.Namespace) and loaded["opt"].seed == 3
    record = loaded["progress"]["Train"]
    assert not isinstance(record, Progress_Saver), "the test's class is never imported"
    assert record.name == "Progress_Saver" and "groups" in record.state
    assert torch.equal(loaded["state_dict"]["weight"], layer.weight)


class WritesAFile:
    """A pickle payload: unpickling it with plain pickle would run ``os.system``."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class ExecutesCode:
    """A pickle payload that would run Python source through ``builtins.exec``."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (exec, (f"open({str(self.target)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("payload", [WritesAFile, ExecutesCode])
@pytest.mark.parametrize("container", ["torch.save", "plain pickle"])
def test_a_pickle_that_runs_code_is_refused_and_nothing_executes(
    tmp_path: Path, payload: type, container: str
) -> None:
    target = tmp_path / "pwned"
    source = tmp_path / "evil.pth"
    evil = payload(target)
    if container == "torch.save":
        torch.save({"state_dict": nn.Linear(2, 2).state_dict(), "opt": evil}, source)
    else:
        source.write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(
        UnsafePickleError, match=r"refused: the pickle calls (posix\.system|builtins\.exec)"
    ):
        import_checkpoint(source, tmp_path / "out.safetensors")
    assert not target.exists()
    assert not (tmp_path / "out.safetensors").exists()


def test_torchscript_archives_are_refused(tmp_path: Path) -> None:
    source = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still readable
        torch.jit.save(torch.jit.script(nn.Linear(2, 2)), source)
    with pytest.raises(ValueError, match="TorchScript"):
        import_checkpoint(source, tmp_path / "out.safetensors")


def test_plain_state_dict_of_this_projects_arch(tmp_path: Path) -> None:
    torch.manual_seed(1)
    original = build_model("small_cnn", 16, in_channels=1, normalize=False).eval()
    source = tmp_path / "weights.pth"
    torch.save({"state_dict": original.state_dict(), "epoch": 7}, source)
    result = import_checkpoint(source, tmp_path / "imported.safetensors", normalize=False)
    assert result.source_format == "state_dict"
    assert result.model_config["arch"] == "small_cnn" and result.model_config["in_channels"] == 1
    model, metadata = load_checkpoint(tmp_path / "imported.safetensors")
    inputs = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(inputs), original(inputs))
    assert (
        metadata["config"]["dataset"] == "glyphs" and metadata["source"]["format"] == "state_dict"
    )
    assert result.mapping.missing == [] and result.mapping.unexpected == []


def test_a_projects_own_checkpoint_reimports(tmp_path: Path) -> None:
    from dml_core.engine.checkpoint import save_checkpoint

    original = build_model("mlp", 2)
    save_checkpoint(tmp_path / "ours.safetensors", original, {"model": original.config()})
    result = import_checkpoint(tmp_path / "ours.safetensors", tmp_path / "again.safetensors")
    assert result.source_format == "safetensors" and result.model_config["arch"] == "mlp"
    model, metadata = load_checkpoint(tmp_path / "again.safetensors")
    assert metadata["config"]["dataset"] == "toy_diagonal"
    inputs = torch.randn(4, 2)
    with torch.no_grad():
        assert torch.equal(model(inputs), original.eval()(inputs))


@pytest.mark.slow
def test_torchvision_resnet_state_dict_maps_fc_to_the_head(tmp_path: Path) -> None:
    torch.manual_seed(2)
    network = torchvision.models.resnet18(weights=None)
    network.fc = nn.Linear(512, 64)
    network.eval()
    source = tmp_path / "resnet18.pth"
    torch.save(network.state_dict(), source)
    result = import_checkpoint(source, tmp_path / "imported.safetensors", normalize=False)
    assert result.model_config["arch"] == "resnet18" and result.model_config["embed_dim"] == 64
    model, _ = load_checkpoint(tmp_path / "imported.safetensors")
    inputs = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(inputs), network(inputs), atol=1e-5)


def _small_cnn_state() -> dict[str, torch.Tensor]:
    return build_model("small_cnn", 8, in_channels=3).state_dict()


def test_shape_mismatch_is_refused(tmp_path: Path) -> None:
    state = _small_cnn_state()
    state["backbone.4.weight"] = torch.zeros(64, 31, 3, 3)
    torch.save(state, tmp_path / "wrong.pth")
    with pytest.raises(
        ValueError, match=r"shapes do not fit small_cnn: backbone\.4\.weight \(64, 31, 3, 3\)"
    ):
        import_checkpoint(tmp_path / "wrong.pth", tmp_path / "out.safetensors", allow_partial=True)
    assert not (tmp_path / "out.safetensors").exists()


def test_missing_and_unexpected_keys_are_reported_and_refused(tmp_path: Path) -> None:
    state = _small_cnn_state()
    del state["backbone.4.weight"]
    state["backbone.extra.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(
        ValueError,
        match=r"missing keys \['backbone\.4\.weight'\], unexpected keys \['backbone\.extra\.weight'\]",
    ):
        import_checkpoint(tmp_path / "partial.pth", tmp_path / "out.safetensors")
    with pytest.warns(UserWarning, match="1 of 24 backbone tensors are at random initialisation"):
        result = import_checkpoint(
            tmp_path / "partial.pth", tmp_path / "out.safetensors", allow_partial=True
        )
    assert result.mapping.missing == ["backbone.4.weight"]
    assert result.mapping.unexpected == ["backbone.extra.weight"]
    assert read_metadata(tmp_path / "out.safetensors")["source"]["key_mapping"]["missing"] == [
        "backbone.4.weight"
    ]


def test_unknown_layout_asks_for_the_arch(tmp_path: Path) -> None:
    torch.save(
        {"encoder.weight": torch.zeros(2, 2), "fc.weight": torch.zeros(4, 2)}, tmp_path / "x.pth"
    )
    with pytest.raises(ValueError, match=r"cannot tell the architecture .* pass arch"):
        import_checkpoint(tmp_path / "x.pth", tmp_path / "out.safetensors")


def test_official_checkpoint_of_another_backbone_is_refused(tmp_path: Path) -> None:
    opt = official_opt()
    opt.arch = "bninception_frozen_normalize"
    state = {"model.conv1.weight": torch.zeros(1), "model.last_linear.weight": torch.zeros(128, 4)}
    torch.save(
        {"state_dict": state, "opt": opt, "progress": None, "aux": None}, tmp_path / "bn.pth"
    )
    with pytest.raises(ValueError, match="only ResNet50"):
        import_checkpoint(tmp_path / "bn.pth", tmp_path / "out.safetensors")


def test_cli_import_prints_the_key_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dml_core.cli import main

    torch.save(_small_cnn_state(), tmp_path / "weights.pt")
    out = tmp_path / "imported.safetensors"
    argv = ["import", str(tmp_path / "weights.pt"), "--out", str(out), "--dataset", "glyphs"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["arch"] == "small_cnn" and printed["format"] == "state_dict"
    assert printed["keys"]["matched"] == len(_small_cnn_state())
    assert printed["keys"]["missing"] == [] and printed["keys"]["unexpected"] == []
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "opt": WritesAFile(tmp_path / "pwned")}, evil)
    assert main(["import", str(evil), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert capsys.readouterr().err.startswith("error: refused: the pickle calls posix.system")
    assert not (tmp_path / "pwned").exists()


class PMLExampleMLP(nn.Module):
    """The embedder of PyTorch-Metric-Learning's examples, rebuilt here: ReLU then Linear per
    layer (no ReLU before the first), the layers in ``net`` and the last one also reachable as
    ``last_linear``, so its state dict holds ``net.0.*`` and the alias ``last_linear.*``."""

    def __init__(self, layer_sizes: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for position, (size_in, size_out) in enumerate(itertools.pairwise(layer_sizes)):
            if position > 0:
                layers.append(nn.ReLU(inplace=False))
            layers.append(nn.Linear(size_in, size_out))
        self.net = nn.Sequential(*layers)
        self.last_linear = self.net[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def pml_models(seed: int) -> dict[str, nn.Module]:
    """PML's usual pair: a torchvision ResNet18 trunk with ``fc = Identity`` and an MLP embedder;
    BatchNorm statistics moved away from their initial values by a few training-mode passes."""
    torch.manual_seed(seed)
    trunk = torchvision.models.resnet18(weights=None)
    trunk.fc = nn.Identity()
    with torch.no_grad():
        for _ in range(2):
            trunk(torch.randn(4, 3, 32, 32) * 2 + 0.5)
    return {"trunk": trunk.eval(), "embedder": PMLExampleMLP([512, 32]).eval()}


def pml_forward(models: dict[str, nn.Module], inputs: torch.Tensor) -> torch.Tensor:
    """PML's own inference: trunk → embedder → L2 normalisation (``InferenceModel``)."""
    from pytorch_metric_learning.utils.inference import InferenceModel

    inference = InferenceModel(models["trunk"], models["embedder"], data_device=torch.device("cpu"))
    return inference.get_embeddings(inputs)


@pytest.mark.slow
def test_pml_pair_and_saved_models_folder_embed_like_pml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytorch_metric_learning.utils import common_functions as pml_functions

    from dml_core.cli import main

    folder = tmp_path / "saved_models"
    folder.mkdir()
    best, latest = pml_models(0), pml_models(1)
    # What PML's logging hook leaves: the best epoch (2) and the latest (3).
    pml_functions.save_dict_of_models(best, "best2", str(folder))
    pml_functions.save_dict_of_models(latest, 3, str(folder))
    assert {p.name for p in folder.iterdir()} == {
        "trunk_best2.pth",
        "embedder_best2.pth",
        "trunk_3.pth",
        "embedder_3.pth",
    }
    inputs = torch.randn(3, 3, 64, 64)

    def embeds_like(path: Path, models: dict[str, nn.Module]) -> None:
        model, metadata = load_checkpoint(path)
        with torch.no_grad():
            ours = model.eval()(inputs)
        assert torch.allclose(ours, pml_forward(models, inputs), atol=1e-5)
        assert metadata["source"]["format"] == "pml" and model.arch == "resnet18"

    # Two files, given embedder first: the names say which is which.
    pair = import_checkpoint(
        [folder / "embedder_best2.pth", folder / "trunk_best2.pth"], tmp_path / "pair.safetensors"
    )
    embeds_like(tmp_path / "pair.safetensors", best)
    assert pair.mapping.missing == [] and pair.mapping.unexpected == []
    assert pair.model_config["embed_dim"] == 32 and pair.model_config["normalize"]
    assert pair.source["file"] == "trunk_best2.pth + embedder_best2.pth"
    assert [f["file"] for f in pair.source["files"]] == ["trunk_best2.pth", "embedder_best2.pth"]
    for entry in pair.source["files"]:
        digest = hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest()
        assert entry["sha256"] == digest

    assert main(["import", str(folder), "--out", str(tmp_path / "best.safetensors")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["files"] == "trunk_best2.pth + embedder_best2.pth" and "warning" not in printed
    embeds_like(tmp_path / "best.safetensors", best)
    argv = ["import", str(folder), "--iteration", "latest", "--out", str(tmp_path / "3.st")]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["files"] == "trunk_3.pth + embedder_3.pth"
    embeds_like(tmp_path / "3.st", latest)
    argv[3] = "5"
    assert main(argv) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "no trunk_/embedder_ pair for iteration '5' (PML saved_models holding: 3, best2); "
            "pass --iteration best, latest, N or bestN"
        )
    )

    # The trunk alone says how to import it; the embedder alone, forced onto a ResNet18 with
    # --allow-partial, says in one line that the backbone stays random.
    assert main(["import", str(folder / "trunk_3.pth"), "--out", str(tmp_path / "x.st")]) == 2
    assert "import TRUNK.pth EMBEDDER.pth" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="the backbone is entirely at random initialisation"):
        alone = import_checkpoint(
            folder / "embedder_3.pth",
            tmp_path / "alone.safetensors",
            arch="resnet18",
            allow_partial=True,
        )
    assert "backbone is entirely at random" in alone.summary()["warning"]
    assert read_metadata(tmp_path / "alone.safetensors")["source"]["random_init"]


def test_a_pml_embedder_of_several_layers_is_refused(tmp_path: Path) -> None:
    torch.save(build_model("mlp", 4).backbone.state_dict(), tmp_path / "trunk_1.pth")
    torch.save(PMLExampleMLP([30, 16, 4]).state_dict(), tmp_path / "embedder_1.pth")
    with pytest.raises(
        ValueError, match=r"has the layers \['net\.0', 'net\.2'\]: only an embedder"
    ):
        import_checkpoint(tmp_path, tmp_path / "out.safetensors", iteration="1")
    assert not (tmp_path / "out.safetensors").exists()


def test_a_pml_pair_of_this_projects_mlp_is_exact(tmp_path: Path) -> None:
    """A trunk that is the toy's MLP backbone: no BatchNorm, so the comparison is exact."""
    torch.manual_seed(4)
    trunk = build_model("mlp", 2).backbone
    embedder = PMLExampleMLP([30, 2])
    torch.save(trunk.state_dict(), tmp_path / "trunk.pth")
    torch.save(embedder.state_dict(), tmp_path / "embedder.pth")
    result = import_checkpoint(
        [tmp_path / "trunk.pth", tmp_path / "embedder.pth"], tmp_path / "out.safetensors"
    )
    assert result.mapping.ignored == [] and len(result.mapping.matched) == 6
    model, metadata = load_checkpoint(tmp_path / "out.safetensors")
    inputs = torch.randn(5, 2)
    with torch.no_grad():
        expected = nn.functional.normalize(embedder(trunk(inputs)), dim=1)
        assert torch.equal(model.eval()(inputs), expected)
    assert metadata["config"]["dataset"] == "toy_diagonal"
