"""Datasets on tiny fakes of every supported layout, transforms, bad input and the toy data."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from torch.utils.data import DataLoader

from dml_core.data import (
    DATASETS,
    CorruptImageWarning,
    build_dataset,
    default_transforms,
)
from dml_core.data.toy_diagonal import POINTS_PER_LINE, TEST_LINES, TRAIN_LINES
from dml_core.data.transforms import IMAGENET_MEAN, IMAGENET_STD

NUM_CLASSES = 6
IMAGES_PER_CLASS = 3
SMALL_SIZE = 32


def write_image(path: Path, colour_seed: int) -> Path:
    """A small noisy RGB picture; PNG or JPEG by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(colour_seed)
    pixels = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def truncate(path: Path) -> Path:
    """Keep the first half of a file's bytes (a truncated image)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def cub_class_names() -> list[str]:
    return [f"{i:03d}.Bird_{chr(ord('A') + i)}" for i in range(1, NUM_CLASSES + 1)]


def make_cub_official(folder: Path) -> Path:
    images, labels, classes = [], [], []
    image_id = 0
    for class_id, name in enumerate(cub_class_names(), start=1):
        classes.append(f"{class_id} {name}")
        for k in range(IMAGES_PER_CLASS):
            image_id += 1
            relative = f"{name}/{name}_{k}.jpg"
            write_image(folder / "images" / relative, image_id)
            images.append(f"{image_id} {relative}")
            labels.append(f"{image_id} {class_id}")
    (folder / "images.txt").write_text("\n".join(images) + "\n")
    (folder / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (folder / "classes.txt").write_text("\n".join(classes) + "\n")
    return folder


def make_class_folders(folder: Path, names: list[str], suffix: str = ".jpg") -> Path:
    for class_index, name in enumerate(names):
        for k in range(IMAGES_PER_CLASS):
            write_image(folder / name / f"img_{k}{suffix}", 100 * class_index + k)
    return folder


def make_cars_official(root: Path) -> Path:
    relative_paths, class_ids = [], []
    for class_id in range(1, NUM_CLASSES + 1):
        for _ in range(IMAGES_PER_CLASS):
            relative = f"car_ims/{len(relative_paths) + 1:06d}.jpg"
            write_image(root / relative, len(relative_paths))
            relative_paths.append(relative)
            class_ids.append(class_id)
    annotations = np.zeros(len(relative_paths), dtype=[("relative_im_path", "O"), ("class", "O")])
    annotations["relative_im_path"] = relative_paths
    annotations["class"] = [np.uint8(c) for c in class_ids]
    class_names = np.array([f"Car Model {c}" for c in range(1, NUM_CLASSES + 1)], dtype=object)
    scipy.io.savemat(
        root / "cars_annos.mat", {"annotations": annotations, "class_names": class_names}
    )
    return root


def make_sop(root: Path, info_folder: Path, image_folder: Path) -> Path:
    """Classes 1–3 in Ebay_train.txt, 4–6 in Ebay_test.txt, each with images in <category>_final."""
    header = "image_id class_id super_class_id path\n"
    image_id = 0
    for file_name, class_ids in (("Ebay_train.txt", (1, 2, 3)), ("Ebay_test.txt", (4, 5, 6))):
        lines = [header]
        for class_id in class_ids:
            category = "bicycle" if class_id % 2 else "chair"
            for k in range(IMAGES_PER_CLASS):
                image_id += 1
                relative = f"{category}_final/{class_id}_{k}.JPG"
                write_image(image_folder / relative, image_id)
                lines.append(f"{image_id} {class_id} {1 + class_id % 2} {relative}\n")
        info_folder.mkdir(parents=True, exist_ok=True)
        (info_folder / file_name).write_text("".join(lines))
    return root


LAYOUTS = {
    "cub200-official-nested": ("cub200", lambda r: make_cub_official(r / "CUB_200_2011") and r),
    "cub200-official-flat": ("cub200", make_cub_official),
    "cub200-paper": ("cub200", lambda r: make_class_folders(r / "images", cub_class_names()) and r),
    "cars196-official": ("cars196", make_cars_official),
    "cars196-paper": (
        "cars196",
        lambda r: make_class_folders(r / "images", [f"Car {c}" for c in "ABCDEF"]) and r,
    ),
    "sop-official": ("sop", lambda r: make_sop(r, r, r)),
    "sop-paper": ("sop", lambda r: make_sop(r, r / "Info_Files", r / "images")),
    "imagefolder": (
        "imagefolder",
        lambda r: make_class_folders(r, [f"class_{c}" for c in "fedcba"], ".png"),
    ),
}


@pytest.fixture(params=sorted(LAYOUTS))
def layout(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    name, make = LAYOUTS[request.param]
    root = tmp_path / "data"
    root.mkdir()
    make(root)
    return name, root


def test_every_layout_splits_by_class(layout: tuple[str, Path]) -> None:
    name, root = layout
    train = build_dataset(name, root, "train", image_size=SMALL_SIZE)
    test = build_dataset(name, root, "test", image_size=SMALL_SIZE)
    assert len(train) == len(test) == 3 * IMAGES_PER_CLASS
    assert train.num_classes == test.num_classes == 3
    assert set(train.class_names).isdisjoint(test.class_names)
    for dataset in (train, test):
        assert dataset.labels.dtype == np.int64
        assert sorted(set(dataset.labels.tolist())) == [0, 1, 2]
        assert np.bincount(dataset.labels).tolist() == [IMAGES_PER_CLASS] * 3
        paths = {dataset.image_path(i) for i in range(len(dataset))}
        assert len(paths) == len(dataset) and all(Path(p).is_file() for p in paths)
        image, label, index = dataset[4]
        assert image.shape == (3, SMALL_SIZE, SMALL_SIZE) == dataset.input_shape
        assert (label, index) == (int(dataset.labels[4]), 4)
        assert dataset.thumbnail(0, size=20).size == (20, 20)
        assert dataset.summary()["num_items"] == len(dataset)


def test_class_order_follows_ids_and_names(tmp_path: Path) -> None:
    cub = build_dataset("cub200", make_cub_official(tmp_path), "test")
    assert cub.class_names == cub_class_names()[3:]
    folder = make_class_folders(tmp_path / "f", ["b", "a", "d", "c"])
    assert build_dataset("imagefolder", folder, "train").class_names == ["a", "b"]
    cars = build_dataset("cars196", make_cars_official(tmp_path / "cars"), "train")
    assert cars.class_names == ["Car Model 1", "Car Model 2", "Car Model 3"]
    for index in range(len(cars)):
        relative = Path(cars.image_path(index)).name
        assert int(relative.split(".")[0]) - 1 == index  # annotation order kept
    assert cars.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_sop_labels_and_names(tmp_path: Path) -> None:
    root = make_sop(tmp_path, tmp_path, tmp_path)
    test = build_dataset("sop", root, "test")
    assert test.class_names == ["chair/4", "bicycle/5", "chair/6"]
    assert Path(test.image_path(0)).parent.name == "chair_final"


def test_eval_train_is_train_with_deterministic_transform(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path, list("abcd"))
    train = build_dataset("imagefolder", root, "train", image_size=SMALL_SIZE)
    eval_train = build_dataset("imagefolder", root, "eval_train", image_size=SMALL_SIZE)
    assert eval_train.class_names == train.class_names
    assert np.array_equal(eval_train.labels, train.labels)
    assert torch.equal(eval_train[1][0], eval_train[1][0])
    torch.manual_seed(0)
    first = train[1][0]
    assert not torch.equal(first, train[1][0])  # random crop/flip differs between calls


def test_imagefolder_explicit_classes(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path, list("abcde"))
    train = build_dataset("imagefolder", root, "train", train_classes=["e", "a"])
    test = build_dataset("imagefolder", root, "test", train_classes=["e", "a"])
    assert train.class_names == ["a", "e"] and test.class_names == ["b", "c", "d"]
    only_test = build_dataset("imagefolder", root, "train", test_classes=["b", "c"])
    assert only_test.class_names == ["a", "d", "e"]
    assert build_dataset("imagefolder", root, "train", train_fraction=0.6).class_names == list(
        "abc"
    )
    with pytest.raises(ValueError, match="unknown class folder"):
        build_dataset("imagefolder", root, "train", train_classes=["zebra", "a"])
    with pytest.raises(ValueError, match="in both"):
        build_dataset("imagefolder", root, "train", train_classes=["a", "b"], test_classes=["b"])


def test_dataloader_batches(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path, list("abcd"), ".png")
    dataset = build_dataset("imagefolder", root, "test", image_size=SMALL_SIZE)
    images, labels, indices = next(iter(DataLoader(dataset, batch_size=4)))
    assert images.shape == (4, 3, SMALL_SIZE, SMALL_SIZE) and images.dtype == torch.float32
    assert labels.tolist() == dataset.labels[:4].tolist() and indices.tolist() == [0, 1, 2, 3]


# --- bad input -------------------------------------------------------------------------------


@pytest.fixture
def folder_with_corrupt(tmp_path: Path) -> Path:
    root = make_class_folders(tmp_path / "data", list("abcd"))
    truncate(root / "a" / "img_1.jpg")
    (root / "b" / "img_0.jpg").write_text("not an image")
    return root


def test_corrupt_image_skipped_warned_once_and_counted(folder_with_corrupt: Path) -> None:
    dataset = build_dataset("imagefolder", folder_with_corrupt, "train", image_size=SMALL_SIZE)
    bad_index = dataset.image_path(1)
    assert bad_index is not None and bad_index.endswith("img_1.jpg")
    with pytest.warns(CorruptImageWarning, match=r"img_1\.jpg") as record:
        image, label, index = dataset[1]
    assert len(record) == 1
    assert (index, label) == (2, 0) and image.shape == (3, SMALL_SIZE, SMALL_SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dataset[1][2] == 2  # known bad: skipped again without a second warning
    with pytest.warns(CorruptImageWarning, match=r"img_0\.jpg"):
        assert dataset[3][2] == 4  # first image of class b is bad: next good is its second
    summary = dataset.summary()
    assert summary["num_skipped"] == 2
    assert [Path(p).name for p in summary["skipped_files"]] == ["img_1.jpg", "img_0.jpg"]


def test_verify_drops_bad_files_up_front(folder_with_corrupt: Path) -> None:
    with pytest.warns(CorruptImageWarning, match=r"dropped 2 of 6 image\(s\)"):
        dataset = build_dataset("imagefolder", folder_with_corrupt, "train", verify=True)
    assert len(dataset) == 2 * IMAGES_PER_CLASS - 2
    assert dataset.summary()["num_skipped"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [dataset[i][2] for i in range(len(dataset))] == list(range(len(dataset)))


def test_all_images_bad_raises_naming_the_folder(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path, list("abcd"))
    dataset = build_dataset("imagefolder", root, "test")
    for path in root.glob("*/*.jpg"):
        path.write_bytes(b"")
    assert dataset.thumbnail(0).size == (64, 64)  # grey placeholder, no crash
    with pytest.raises(ValueError, match=r"none of the 6 listed image\(s\) is a readable") as error:
        build_dataset("imagefolder", root, "test")
    assert str(root) in str(error.value)


@pytest.mark.parametrize("name", ["cub200", "cars196", "sop", "imagefolder"])
def test_missing_root_names_path_and_layout(name: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere") as error:
        build_dataset(name, missing)
    assert "expected" in str(error.value) and "<root>" in str(error.value)
    with pytest.raises(ValueError, match="needs root"):
        build_dataset(name, None)


@pytest.mark.parametrize("name", ["cub200", "cars196", "sop", "imagefolder"])
def test_wrong_layout_names_path_and_layout(name: str, tmp_path: Path) -> None:
    (tmp_path / "stray.txt").write_text("nothing here")
    with pytest.raises(FileNotFoundError, match=str(tmp_path.name)) as error:
        build_dataset(name, tmp_path)
    assert "looked for" in str(error.value) and "\n" not in str(error.value)


def test_listed_images_missing(tmp_path: Path) -> None:
    root = make_cub_official(tmp_path)
    for path in (root / "images").glob("*/*.jpg"):
        path.unlink()
    with pytest.raises(ValueError, match=r"none of the 9 listed image.s. .*9 missing"):
        build_dataset("cub200", root)


def test_unreadable_cars_annotations(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "cars_annos.mat", {"something_else": np.zeros(3)})
    with pytest.raises(ValueError, match="relative_im_path"):
        build_dataset("cars196", tmp_path)


def test_split_with_one_class_and_bad_names(tmp_path: Path) -> None:
    root = make_class_folders(tmp_path, list("abc"))
    with pytest.raises(ValueError, match="at least two"):
        build_dataset("imagefolder", root, "train")
    with pytest.raises(ValueError, match="valid splits"):
        build_dataset("imagefolder", root, "validation")
    with pytest.raises(ValueError, match="cub200, glyphs, imagefolder, sop, toy_diagonal"):
        build_dataset("mnist")
    assert set(DATASETS) == {
        "cub200",
        "cars196",
        "sop",
        "imagefolder",
        "csv",
        "glyphs",
        "toy_diagonal",
    }


# --- transforms ------------------------------------------------------------------------------


def test_photo_transform_shapes_rgb_and_normalisation() -> None:
    grey = Image.new("L", (300, 200), 51)  # converted to RGB by the loader; here by hand
    for split, size in (("train", 224), ("test", 224), ("eval_train", 96)):
        output = default_transforms("photo", split, size)(grey.convert("RGB"))
        assert output.shape == (3, size, size) and output.dtype == torch.float32
        assert type(output) is torch.Tensor  # a plain tensor, not a torchvision tv_tensor
        expected = (0.2 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
        assert torch.allclose(output.mean(dim=(1, 2)), expected, atol=1e-4)


def test_photo_test_transform_resizes_then_centre_crops() -> None:
    """Resize(256) keeps the aspect (shorter side 256), then CenterCrop(224) cuts the centre."""
    pixels = np.zeros((200, 400, 3), dtype=np.uint8)
    pixels[:, 150:250] = 255  # a white band in the middle 100 of 400 columns
    output = default_transforms("photo", "test")(Image.fromarray(pixels))
    white = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    row = output[0, 112]
    band = torch.isclose(row, white[0], atol=0.05).nonzero().squeeze(1)
    # 400×200 → 512×256: band spans columns 192..319; the 224 crop starts at column 144.
    assert band.min().item() in (47, 48, 49) and band.max().item() in (174, 175, 176)
    custom = default_transforms("photo", "test", 64, resize_size=128)(Image.fromarray(pixels))
    assert (
        custom.shape == (3, 64, 64) and torch.isclose(custom[0, :, 8:-8], white[0], atol=0.05).all()
    )


def test_glyph_transform_and_bad_kind() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    test_output = default_transforms("glyph", "test")(Image.fromarray(pixels))
    expected = (torch.from_numpy(pixels).float() / 255 - 0.5) / 0.5
    assert test_output.shape == (1, 32, 32) and torch.allclose(test_output[0], expected, atol=1e-6)
    torch.manual_seed(0)
    train_output = default_transforms("glyph", "train")(Image.fromarray(pixels))
    assert train_output.shape == (1, 32, 32) and not torch.allclose(train_output, test_output)
    with pytest.raises(ValueError, match="photo, glyph"):
        default_transforms("audio", "train")


# --- toy_diagonal ----------------------------------------------------------------------------


def on_segment(points: np.ndarray, start: tuple, end: tuple) -> np.ndarray:
    """Which points are among the 100 evenly spaced points of the segment start→end."""
    grid = np.asarray(start) + np.linspace(0, 1, POINTS_PER_LINE)[:, None] * np.subtract(end, start)
    return (np.abs(points[:, None, :] - grid[None]).max(axis=2) < 1e-6).any(axis=1)


@pytest.mark.parametrize(("split", "lines"), [("train", TRAIN_LINES), ("test", TEST_LINES)])
def test_toy_geometry(split: str, lines: tuple) -> None:
    dataset = build_dataset("toy_diagonal", split=split, seed=3)
    points, labels = dataset.tensors()
    assert points.shape == (60, 2) and points.dtype == torch.float32 and labels.dtype == torch.int64
    assert np.bincount(labels.numpy()).tolist() == [15] * 4
    for label, (start, end) in enumerate(lines):
        in_class = points[labels == label].double().numpy()
        assert on_segment(in_class, start, end).all()
        assert len(np.unique(in_class, axis=0)) == 15  # drawn without replacement
        others = points[labels != label].double().numpy()
        assert not on_segment(others, start, end).any()
    if split == "train":
        assert torch.allclose(points[:, 0], points[:, 1])
    else:
        assert ((points[:, 0] - 0.2).abs() < 1e-6).sum() == 30
        assert ((points[:, 1] - 0.2).abs() < 1e-6).sum() == 30
    point, label, index = dataset[7]
    assert point.shape == (2,) and torch.equal(point, points[7])
    assert (label, index) == (int(labels[7]), 7)
    assert dataset.input_shape == (2,) and dataset.image_path(0) is None
    assert dataset.thumbnail(0, size=32).size == (32, 32)


def test_toy_seeds_and_splits() -> None:
    train = build_dataset("toy_diagonal", split="train", seed=1)
    same = build_dataset("toy_diagonal", split="train", seed=1)
    other = build_dataset("toy_diagonal", split="train", seed=2)
    assert torch.equal(train.tensors()[0], same.tensors()[0])
    assert not torch.equal(train.tensors()[0], other.tensors()[0])
    eval_train = build_dataset("toy_diagonal", split="eval_train", seed=1)
    assert torch.equal(train.tensors()[0], eval_train.tensors()[0])
    test = build_dataset("toy_diagonal", split="test", seed=1)
    assert set(train.class_names).isdisjoint(test.class_names)
    assert len(set(train.class_names)) == len(set(test.class_names)) == 4
    shifted = build_dataset("toy_diagonal", seed=1, transform=lambda p: p + 1)
    assert torch.equal(shifted[0][0], train[0][0] + 1)
