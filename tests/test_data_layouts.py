"""Benchmark datasets as users have them: every accepted layout at full class count (tiny images),
parent roots, hidden sidecar files, missing and unreadable files (dropped, counted, reported, never
paired with another item's label) and the one-line errors for broken metadata."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from dml_core.data import CorruptImageWarning, build_dataset
from dml_core.data.cars196 import CARS196_CLASS_NAMES
from dml_core.data.subset import ClassSubset
from dml_core.engine.evaluation import compute_embeddings

SIZE = 8
CUB_CLASSES = [f"{i:03d}.Bird_{i}" for i in range(1, 201)]
IMAGES_PER_CLASS = 2

Truth = dict[str, str]  # resolved image path -> class name


def write_image(path: Path, seed: int) -> str:
    """A tiny noisy RGB image (format by suffix); returns its resolved path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG" if path.suffix.lower() == ".jpg" else None)
    return str(path.resolve())


def add_sidecars(folder: Path) -> None:
    """What macOS leaves in copied folders: ``._<name>`` AppleDouble files, ``.DS_Store``, and a
    hidden folder of 'images'."""
    for image in [p for p in folder.rglob("*.jpg") if not p.name.startswith(".")][:50]:
        (image.parent / f"._{image.name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble junk")
    (folder / ".DS_Store").write_bytes(b"Bud1 junk")
    write_image(folder / ".hidden_class" / "a.jpg", 0)


# --- CUB-200-2011 ----------------------------------------------------------------------------


def make_cub_official(folder: Path) -> Truth:
    images, labels, classes, truth = [], [], [], {}
    for class_id, name in enumerate(CUB_CLASSES, start=1):
        classes.append(f"{class_id} {name}")
        for k in range(IMAGES_PER_CLASS):
            image_id = len(images) + 1
            relative = f"{name}/{name}_{k}.jpg"
            truth[write_image(folder / "images" / relative, image_id)] = name
            images.append(f"{image_id} {relative}")
            labels.append(f"{image_id} {class_id}")
    (folder / "images.txt").write_text("\n".join(images) + "\n")
    (folder / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (folder / "classes.txt").write_text("\n".join(classes) + "\n")
    return truth


def make_cub_paper(folder: Path) -> Truth:
    truth = {}
    for class_id, name in enumerate(CUB_CLASSES, start=1):
        for k in range(IMAGES_PER_CLASS):
            path = folder / "images" / name / f"{name}_{k}.jpg"
            truth[write_image(path, 10 * class_id + k)] = name
    add_sidecars(folder / "images")
    return truth


# --- CARS196 ---------------------------------------------------------------------------------


def cars_items() -> list[tuple[int, int, bool]]:
    """(class id, k, in the official test set) for every image; every class in both halves."""
    return [
        (class_id, k, k % 2 == 1)
        for class_id in range(1, len(CARS196_CLASS_NAMES) + 1)
        for k in range(IMAGES_PER_CLASS)
    ]


def struct_array(columns: dict[str, list]) -> np.ndarray:
    """A MATLAB (1, N) struct array with the fields in the given order."""
    count = len(next(iter(columns.values())))
    records = np.zeros((1, count), dtype=[(name, "O") for name in columns])
    for name, values in columns.items():
        for i, value in enumerate(values):
            records[name][0, i] = value
    return records


def name_cell() -> np.ndarray:
    return np.array([list(CARS196_CLASS_NAMES)], dtype=object)


def make_cars_official(folder: Path) -> Truth:
    """``cars_annos.mat`` (real field order, annotation order shuffled) with ``car_ims/``."""
    items = cars_items()
    random.Random(0).shuffle(items)
    truth, paths, classes, tests = {}, [], [], []
    for number, (class_id, _, is_test) in enumerate(items, start=1):
        relative = f"car_ims/{number:06d}.jpg"
        truth[write_image(folder / relative, number)] = CARS196_CLASS_NAMES[class_id - 1]
        paths.append(relative)
        classes.append(np.uint8(class_id))
        tests.append(np.uint8(is_test))
    zeros = [np.uint16(0)] * len(paths)
    annotations = struct_array(
        {
            "relative_im_path": paths,
            "bbox_x1": zeros,
            "bbox_y1": zeros,
            "bbox_x2": zeros,
            "bbox_y2": zeros,
            "class": classes,
            "test": tests,
        }
    )
    scipy.io.savemat(
        folder / "cars_annos.mat", {"annotations": annotations, "class_names": name_cell()}
    )
    return truth


def make_cars_devkit(folder: Path, nested_images: bool = False) -> Truth:
    """The devkit: ``devkit/cars_meta.mat``, ``devkit/cars_train_annos.mat``,
    ``cars_test_annos_withlabels.mat``, ``cars_train/``, ``cars_test/``."""
    truth: Truth = {}
    (folder / "devkit").mkdir(parents=True)
    scipy.io.savemat(folder / "devkit" / "cars_meta.mat", {"class_names": name_cell()})
    for is_test, images, annotation_file in (
        (False, "cars_train", folder / "devkit" / "cars_train_annos.mat"),
        (True, "cars_test", folder / "cars_test_annos_withlabels.mat"),
    ):
        image_folder = folder / images / images if nested_images else folder / images
        names, classes = [], []
        for class_id, k, in_test in cars_items():
            if in_test != is_test:
                continue
            name = f"{len(names) + 1:05d}.jpg"
            path = image_folder / name
            truth[write_image(path, 1000 * class_id + k)] = CARS196_CLASS_NAMES[class_id - 1]
            names.append(name)
            classes.append(np.uint8(class_id))
        zeros = [np.uint16(0)] * len(names)
        annotations = struct_array(
            {
                "bbox_x1": zeros,
                "bbox_y1": zeros,
                "bbox_x2": zeros,
                "bbox_y2": zeros,
                "class": classes,
                "fname": names,
            }
        )
        scipy.io.savemat(annotation_file, {"annotations": annotations})
    return truth


def make_cars_class_folders(folder: Path) -> Truth:
    """``train/<class>/`` and ``test/<class>/`` with the hubs' folder names ('/' → '-')."""
    truth = {}
    for class_id, k, is_test in cars_items():
        name = CARS196_CLASS_NAMES[class_id - 1]
        part = "test" if is_test else "train"
        path = folder / part / name.replace("/", "-") / f"{class_id:03d}_{k}.jpg"
        truth[write_image(path, 1000 * class_id + k)] = name
    add_sidecars(folder / "train")
    return truth


# --- Stanford Online Products ----------------------------------------------------------------

SOP_TRAIN_CLASSES = list(range(1, 13))
SOP_TEST_CLASSES = list(range(13, 25))


def make_sop(folder: Path, paper_layout: bool) -> Truth:
    """``Ebay_*.txt`` at the folder (authors') or in ``Info_Files/`` with ``images/`` (paper
    code's); CRLF endings, uppercase ``.JPG``."""
    info = folder / "Info_Files" if paper_layout else folder
    images = folder / "images" if paper_layout else folder
    info.mkdir(parents=True, exist_ok=True)
    truth, image_id = {}, 0
    for file_name, class_ids in (
        ("Ebay_train.txt", SOP_TRAIN_CLASSES),
        ("Ebay_test.txt", SOP_TEST_CLASSES),
    ):
        lines = ["image_id class_id super_class_id path"]
        for class_id in class_ids:
            category = ("bicycle", "chair", "kettle")[class_id % 3]
            for k in range(IMAGES_PER_CLASS + 1):
                image_id += 1
                relative = f"{category}_final/{class_id}_{k}.JPG"
                truth[write_image(images / relative, image_id)] = f"{category}/{class_id}"
                lines.append(f"{image_id} {class_id} {1 + class_id % 3} {relative}")
        (info / file_name).write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return truth


def make_imagefolder(folder: Path) -> Truth:
    truth = {}
    for class_index in range(8):
        for k in range(IMAGES_PER_CLASS + 1):
            path = folder / f"class_{class_index}" / f"{k}.jpg"
            truth[write_image(path, 100 * class_index + k)] = f"class_{class_index}"
    add_sidecars(folder)
    return truth


# --- every layout ----------------------------------------------------------------------------

# name -> (dataset, builder(root) -> truth, (train classes, test classes) in order)
CUB_SPLIT = (CUB_CLASSES[:100], CUB_CLASSES[100:])
CARS_SPLIT = (list(CARS196_CLASS_NAMES[:98]), list(CARS196_CLASS_NAMES[98:]))


def sop_names(class_ids: list[int]) -> list[str]:
    return [f"{('bicycle', 'chair', 'kettle')[c % 3]}/{c}" for c in class_ids]


SOP_SPLIT = (sop_names(SOP_TRAIN_CLASSES), sop_names(SOP_TEST_CLASSES))
FOLDER_SPLIT = ([f"class_{i}" for i in range(4)], [f"class_{i}" for i in range(4, 8)])

LAYOUTS = {
    "cub-official-in-root": ("cub200", make_cub_official, CUB_SPLIT),
    "cub-official-parent": ("cub200", lambda r: make_cub_official(r / "CUB_200_2011"), CUB_SPLIT),
    "cub-paper-in-root": ("cub200", make_cub_paper, CUB_SPLIT),
    "cub-paper-parent": ("cub200", lambda r: make_cub_paper(r / "cub200"), CUB_SPLIT),
    "cars-official-in-root": ("cars196", make_cars_official, CARS_SPLIT),
    "cars-official-parent": ("cars196", lambda r: make_cars_official(r / "cars196"), CARS_SPLIT),
    "cars-devkit-in-root": ("cars196", make_cars_devkit, CARS_SPLIT),
    "cars-devkit-torchvision-parent": (
        "cars196",
        lambda r: make_cars_devkit(r / "stanford_cars", nested_images=True),
        CARS_SPLIT,
    ),
    "cars-class-folders-in-root": ("cars196", make_cars_class_folders, CARS_SPLIT),
    "cars-class-folders-hub-parent": (
        "cars196",
        lambda r: make_cars_class_folders(r / "car_data" / "car_data"),
        CARS_SPLIT,
    ),
    "sop-official-in-root": ("sop", lambda r: make_sop(r, False), SOP_SPLIT),
    "sop-official-parent": (
        "sop",
        lambda r: make_sop(r / "Stanford_Online_Products", False),
        SOP_SPLIT,
    ),
    "sop-paper-in-root": ("sop", lambda r: make_sop(r, True), SOP_SPLIT),
    "sop-paper-parent": ("sop", lambda r: make_sop(r / "online_products", True), SOP_SPLIT),
    "imagefolder": ("imagefolder", make_imagefolder, FOLDER_SPLIT),
}


# Layouts whose files are listed in an index (a listed file can be missing); in the others the
# folder listing is the index.
INDEXED = {key for key in LAYOUTS if key.startswith(("cub-official", "cars-official", "cars-dev"))}
INDEXED |= {key for key in LAYOUTS if key.startswith("sop")}


@pytest.fixture(params=sorted(LAYOUTS))
def layout(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path, Truth, tuple]:
    dataset, make, split = LAYOUTS[request.param]
    root = tmp_path / "data"
    root.mkdir()
    return dataset, root, make(root), split


@pytest.fixture(params=sorted(INDEXED))
def indexed_layout(request: pytest.FixtureRequest, tmp_path: Path) -> tuple:
    return layout.__wrapped__(request, tmp_path)


def build(name: str, root: Path, split: str):
    return build_dataset(name, root, split, image_size=SIZE)


def assert_items_match_truth(dataset, truth: Truth, count: int | None = None) -> None:
    """``count`` random items (every item when None): file ↔ label as the builder wrote them."""
    positions = range(len(dataset))
    if count is not None:
        positions = random.Random(len(dataset)).sample(positions, count)
    for i in positions:
        path = str(Path(dataset.image_path(i)).resolve())
        assert truth[path] == dataset.class_names[int(dataset.labels[i])], path


def test_layout_classes_counts_and_items(layout: tuple) -> None:
    name, root, truth, (train_classes, test_classes) = layout
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a healthy tree warns about nothing
        train, test = build(name, root, "train"), build(name, root, "test")
    assert train.class_names == train_classes and test.class_names == test_classes
    assert len(train) + len(test) == len(truth)  # sidecars and hidden folders are not items
    for dataset in (train, test):
        counts = np.bincount(dataset.labels, minlength=dataset.num_classes)
        assert len(set(counts.tolist())) == 1 and counts[0] >= 1
        assert_items_match_truth(dataset, truth, count=5)
        image, label, index = dataset[3]
        assert image.shape == (3, SIZE, SIZE) and (label, index) == (int(dataset.labels[3]), 3)
        assert dataset.summary()["num_skipped"] == 0


def test_cars_layouts_give_the_same_split_by_class_id(tmp_path: Path) -> None:
    splits = []
    for make in (make_cars_official, make_cars_devkit, make_cars_class_folders):
        root = tmp_path / make.__name__
        root.mkdir()
        make(root)
        train, test = build("cars196", root, "train"), build("cars196", root, "test")
        assert len(train) == len(test) == 98 * IMAGES_PER_CLASS
        splits.append((train.class_names, test.class_names))
    assert splits[0] == splits[1] == splits[2] == (CARS_SPLIT[0], CARS_SPLIT[1])
    assert "Ram C/V Cargo Van Minivan 2012" in splits[2][1]  # folder 'Ram C-V …' mapped back


# --- missing and unreadable files ------------------------------------------------------------


class MeanColour(torch.nn.Module):
    """A parameter-free 'model': the mean of each channel (deterministic per image)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3))


def embed(dataset, **options):
    return compute_embeddings(MeanColour(), dataset, device=torch.device("cpu"), **options)


def test_missing_first_and_middle_files_are_dropped_counted_and_reported(
    indexed_layout: tuple,
) -> None:
    name, root, truth, (train_classes, test_classes) = indexed_layout
    full_train, full_test = build(name, root, "train"), build(name, root, "test")
    first = Path(full_train.image_path(0))  # the first entry of the index (or first folder)
    middle = Path(full_test.image_path(len(full_test) // 2 + 1))
    first.unlink()
    middle.unlink()
    for split, full, gone in (("train", full_train, first), ("test", full_test, middle)):
        with pytest.warns(CorruptImageWarning) as record:
            dataset = build(name, root, split)
        messages = [str(w.message) for w in record]
        assert len(messages) == 1, messages
        assert f"dropped 1 of {len(full)} image(s) (1 missing, 0 unreadable)" in messages[0]
        assert str(gone) in messages[0]
        assert len(dataset) == len(full) - 1
        assert dataset.summary()["skipped_files"] == [str(gone)]
        assert dataset.class_names == (train_classes if split == "train" else test_classes)
        assert str(gone) not in {dataset.image_path(i) for i in range(len(dataset))}
        assert_items_match_truth(dataset, truth)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing left to drop at evaluation
            embeddings, labels = embed(dataset, batch_size=7)
        assert embeddings.shape == (len(dataset), 3) and np.array_equal(labels, dataset.labels)


def test_unreadable_file_met_when_read_is_dropped_from_evaluation(tmp_path: Path) -> None:
    truth = make_imagefolder(tmp_path)
    dataset = build("imagefolder", tmp_path, "test")
    bad = 4  # class_5, second image: not the probe's first file
    Path(dataset.image_path(bad)).write_bytes(b"\xff\xd8 truncated jpeg")
    dataset = build("imagefolder", tmp_path, "test")  # the probe reads item 0 only
    assert len(dataset) == 12
    with pytest.warns(CorruptImageWarning) as record:
        embeddings, labels, indices = embed(dataset, batch_size=5, return_indices=True)
    assert any("1 unreadable item(s) of 12 dropped" in str(w.message) for w in record)
    assert embeddings.shape == (11, 3) and indices.tolist() == [i for i in range(12) if i != bad]
    assert np.array_equal(labels, dataset.labels[indices])
    for row, index in enumerate(indices.tolist()):  # each row is its own item's image
        path = str(Path(dataset.image_path(index)).resolve())
        assert truth[path] == dataset.class_names[labels[row]]
        assert torch.allclose(embeddings[row], dataset[index][0].mean(dim=(1, 2)))


def test_unreadable_file_in_training_stands_in_from_the_same_class(tmp_path: Path) -> None:
    make_imagefolder(tmp_path)
    train = build("imagefolder", tmp_path, "train")
    bad = 4
    Path(train.image_path(bad)).write_bytes(b"not an image")
    train = build("imagefolder", tmp_path, "train")
    with pytest.warns(CorruptImageWarning, match="unreadable image"):
        image, label, index = train[bad]
    assert image.shape == (3, SIZE, SIZE)
    assert (label, index) == (1, 5)  # the next item of class_1, under its own index
    subset = ClassSubset(train, [1, 2])  # the bad item is the second of class 1
    _, label, position = subset[1]
    assert (label, position) == (0, 2)
    assert train.summary()["num_skipped"] == 1


def test_unreadable_whole_class_and_whole_folder_are_one_line_errors(tmp_path: Path) -> None:
    make_imagefolder(tmp_path)
    train = build("imagefolder", tmp_path, "train")
    for path in (tmp_path / "class_1").glob("*.jpg"):
        path.write_bytes(b"")
    with pytest.warns(CorruptImageWarning), pytest.raises(ValueError) as error:
        train[3]
    assert "every image of class 'class_1' is unreadable" in str(error.value)
    assert "\n" not in str(error.value)
    for path in tmp_path.glob("class_*/*.jpg"):
        path.write_bytes(b"garbage")
    with pytest.raises(ValueError) as error:
        build("imagefolder", tmp_path, "test")
    message = str(error.value)
    assert (
        str(tmp_path) in message and "none of the 12 listed image(s) is a readable image" in message
    )
    assert "\n" not in message


def test_verify_drops_every_unreadable_file_up_front(tmp_path: Path) -> None:
    make_imagefolder(tmp_path)
    (tmp_path / "class_5" / "1.jpg").write_bytes(b"bad")
    (tmp_path / "class_6" / "2.jpg").write_bytes(b"")
    with pytest.warns(CorruptImageWarning, match=r"dropped 2 of 12 image\(s\) \(0 missing, 2 unr"):
        dataset = build_dataset("imagefolder", tmp_path, "test", image_size=SIZE, verify=True)
    assert len(dataset) == 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [dataset[i][2] for i in range(len(dataset))] == list(range(10))


# --- one-line errors -------------------------------------------------------------------------


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_cub_classes_txt_missing_a_class(tmp_path: Path) -> None:
    make_cub_official(tmp_path)
    lines = (tmp_path / "classes.txt").read_text().splitlines()
    (tmp_path / "classes.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError) as error:
        build("cub200", tmp_path, "test")
    message = one_line(error)
    assert "classes.txt has no class id '200'" in message and str(tmp_path) in message
    (tmp_path / "classes.txt").write_text("1 first\nsecond line without id\n")
    with pytest.raises(ValueError, match=r"classes\.txt:2: expected '<integer id> <value>'"):
        build("cub200", tmp_path, "test")


@pytest.mark.parametrize(
    "content",
    [b"garbage, not a MATLAB file" * 10, b""],
    ids=["garbage", "empty"],
)
def test_garbage_cars_annotations(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "cars_annos.mat").write_bytes(content)
    with pytest.raises(ValueError) as error:
        build("cars196", tmp_path, "train")
    message = one_line(error)
    assert "cars_annos.mat" in message and "relative_im_path" in message


def test_cars_annotations_without_the_fields(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "cars_annos.mat", {"annotations": struct_array({"x": [1, 2]})})
    with pytest.raises(ValueError, match="fields relative_im_path, class"):
        build("cars196", tmp_path, "train")


def test_cars_unknown_class_folder(tmp_path: Path) -> None:
    make_cars_class_folders(tmp_path)
    write_image(tmp_path / "test" / "Flying Car 2099" / "a.jpg", 0)
    with pytest.raises(ValueError) as error:
        build("cars196", tmp_path, "train")
    assert "Flying Car 2099: not a Stanford Cars class name" in one_line(error)


@pytest.mark.parametrize(
    ("name", "looked_for", "children"),
    [
        ("cub200", "images.txt, image_class_labels.txt, classes.txt", ["CUB_200_2011", "cub200"]),
        ("cars196", "cars_annos.mat, devkit/cars_meta.mat", ["cars196", "stanford_cars"]),
        (
            "sop",
            "Ebay_train.txt (or Info_Files/Ebay_train.txt)",
            ["Stanford_Online_Products", "online_products"],
        ),
    ],
)
def test_nothing_found_lists_files_and_folders(
    tmp_path: Path, name: str, looked_for: str, children: list[str]
) -> None:
    (tmp_path / children[0]).mkdir()  # present but empty
    with pytest.raises(FileNotFoundError) as error:
        build(name, tmp_path, "train")
    message = one_line(error)
    assert looked_for in message and repr(str(tmp_path)) in message
    assert repr(str(tmp_path / children[0])) + "," in message  # searched, present
    assert repr(str(tmp_path / children[1])) + " (absent)" in message
