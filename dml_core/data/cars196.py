"""``cars196``: Stanford Cars (Krause et al. 2013); classes 1–98 train, 99–196 test.

Four layouts are read, each in ``<root>`` or in one of its sub-folders ``cars196`` (the folder the
paper's code is given), ``stanford_cars`` (torchvision's) or ``car_data`` (the dataset hubs'):

- the authors' ``cars_annos.mat`` (fields ``relative_im_path`` and ``class``, optional
  ``class_names``) with ``car_ims/``;
- the devkit's ``devkit/cars_meta.mat``, ``devkit/cars_train_annos.mat`` and
  ``cars_test_annos_withlabels.mat`` (beside ``devkit/`` or in it; fields ``fname`` and
  ``class``) with ``cars_train/`` and ``cars_test/`` (as torchvision's ``StanfordCars`` reads it);
- the class-folder copy ``train/<class name>/`` and ``test/<class name>/`` (also under
  ``car_data/car_data``), the class id being the name's position in ``CARS196_CLASS_NAMES``;
- the paper code's ``images/<class name>/*.jpg`` (classes in name order, as that code sorts them).

The official train/test files are merged and split by class id (the first three layouts give the
same 98/98 split); on a smaller copy the first half of the classes is train and the second half test.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from dml_core.data.base import (
    DATASETS,
    HalfSplitImageDataset,
    candidate_folders,
    class_folders,
    is_hidden,
    list_images,
    nothing_found,
)

CHILD_FOLDERS = ("cars196", "stanford_cars", "car_data", "car_data/car_data")
CARS_LAYOUT = (
    "cars_annos.mat + car_ims/ (the authors' archive), devkit/cars_meta.mat + cars_train/ + "
    "cars_test/ (the devkit), train/<class>/ + test/<class>/ (class folders) or "
    "images/<class>/*.jpg (the paper code's layout), in <root> or <root>/{cars196,stanford_cars,"
    "car_data}"
)
LOOKED_FOR = "cars_annos.mat, devkit/cars_meta.mat, train/ + test/ class folders or images/<class>/"
MAT_READ_ERRORS = (ValueError, TypeError, KeyError, IndexError, OSError, NotImplementedError)


def read_mat_struct(path: Path, key: str, fields: Sequence[str]) -> list[list[Any]]:
    """The columns ``fields`` of the struct array ``key`` in a .mat file (any shape, flattened);
    anything else is one ValueError naming the file and what was expected."""
    expected = f"expected a struct array {key!r} with fields {', '.join(fields)}"
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True)
        records = np.atleast_1d(mat[key]).ravel()
        return [[records[field][i] for i in range(len(records))] for field in fields]
    except (*MAT_READ_ERRORS, scipy.io.matlab.MatReadError) as error:
        raise ValueError(
            f"cannot read {path} ({type(error).__name__}: {error}); {expected}"
        ) from None


def read_class_names(path: Path, key: str = "class_names") -> list[str]:
    """The class names stored in a .mat file, in class-id order (empty when there are none)."""
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True)
        return [str(name) for name in np.atleast_1d(mat.get(key, [])).ravel()]
    except (*MAT_READ_ERRORS, scipy.io.matlab.MatReadError) as error:
        raise ValueError(
            f"cannot read {path} ({type(error).__name__}: {error}); expected a cell array "
            f"{key!r} of class names"
        ) from None


def class_ids(path: Path, values: Sequence[Any]) -> list[int]:
    """Class ids ≥ 1 from a .mat column; anything else is one ValueError naming the file."""
    try:
        ids = [int(value) for value in values]
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: class ids must be integers ≥ 1 ({error})") from None
    if ids and min(ids) < 1:
        raise ValueError(f"{path}: class ids must be integers ≥ 1, found {min(ids)}")
    return ids


def files_by_class_id(
    paths: Sequence[Path], ids: Sequence[int], stored_names: Sequence[str]
) -> tuple[list[tuple[Path, str]], list[str]]:
    """(path, class name) pairs and the class names in class-id order; an id beyond the stored
    names is called ``class_NNN``."""
    ordered_ids = sorted(set(ids))
    name_of = {
        class_id: stored_names[class_id - 1]
        if class_id <= len(stored_names)
        else f"class_{class_id:03d}"
        for class_id in ordered_ids
    }
    files = [(path, name_of[class_id]) for path, class_id in zip(paths, ids, strict=True)]
    return files, [name_of[class_id] for class_id in ordered_ids]


def official_cars(folder: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """The authors' ``cars_annos.mat``: every image, in annotation order."""
    annotation_file = folder / "cars_annos.mat"
    relative_paths, ids = read_mat_struct(
        annotation_file, "annotations", ("relative_im_path", "class")
    )
    paths = [folder / str(path) for path in relative_paths]
    return files_by_class_id(
        paths, class_ids(annotation_file, ids), read_class_names(annotation_file)
    )


def image_folder(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/name/name`` where an archive nests it once more."""
    nested = folder / name / name
    return nested if nested.is_dir() else folder / name


def devkit_cars(folder: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """The devkit: train annotations, then test annotations; names from ``cars_meta.mat``."""
    devkit = folder / "devkit"
    test_annotations = folder / "cars_test_annos_withlabels.mat"
    if not test_annotations.is_file():
        test_annotations = devkit / "cars_test_annos_withlabels.mat"
    paths: list[Path] = []
    ids: list[int] = []
    for annotation_file, images in (
        (devkit / "cars_train_annos.mat", "cars_train"),
        (test_annotations, "cars_test"),
    ):
        if not annotation_file.is_file():
            raise ValueError(
                f"{folder} has devkit/cars_meta.mat but no {annotation_file.name} (looked in "
                f"{folder} and {devkit}); expected both annotation files of the devkit"
            )
        names, labels = read_mat_struct(annotation_file, "annotations", ("fname", "class"))
        paths += [image_folder(folder, images) / str(name) for name in names]
        ids += class_ids(annotation_file, labels)
    return files_by_class_id(paths, ids, read_class_names(devkit / "cars_meta.mat"))


def folder_name(class_name: str) -> str:
    """The folder a class-folder copy uses for a class ('/' cannot appear in a folder name)."""
    return class_name.replace("/", "-")


def class_folder_cars(folder: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """``train/<class>/`` and ``test/<class>/`` merged; classes get their official names and ids."""
    id_of = {folder_name(name): class_id for class_id, name in enumerate(CARS196_CLASS_NAMES)}
    files = []
    for part in ("train", "test"):
        for class_folder in sorted((folder / part).iterdir()):
            if is_hidden(class_folder) or not class_folder.is_dir():
                continue
            if class_folder.name not in id_of:
                raise ValueError(
                    f"{class_folder}: not a Stanford Cars class name; expected the 196 names of "
                    f"cars_meta.mat as folder names (e.g. {folder_name(CARS196_CLASS_NAMES[173])!r})"
                )
            class_name = CARS196_CLASS_NAMES[id_of[class_folder.name]]
            files += [(path, class_name) for path in list_images(class_folder)]
    present = {name for _, name in files}
    return files, [name for name in CARS196_CLASS_NAMES if name in present]


def find_cars(root: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """Detect the layout under ``root`` and list its files and ordered classes."""
    candidates = candidate_folders(root, CHILD_FOLDERS)
    for folder in candidates:
        if (folder / "cars_annos.mat").is_file():
            return official_cars(folder)
        if (folder / "devkit" / "cars_meta.mat").is_file():
            return devkit_cars(folder)
        if (folder / "train").is_dir() and (folder / "test").is_dir():
            files, classes = class_folder_cars(folder)
            if classes:
                return files, classes
        if (folder / "images").is_dir():
            files, classes = class_folders(folder / "images")
            if classes:
                return files, classes
    raise nothing_found("CARS196", LOOKED_FOR, root, CHILD_FOLDERS)


@DATASETS.register("cars196")
class Cars196Dataset(HalfSplitImageDataset):
    """CARS196, split by class: first half train, second half test (zero-shot)."""

    layout = CARS_LAYOUT
    find_files = staticmethod(find_cars)


# The class names of devkit/cars_meta.mat, in class-id order (id = position + 1).
CARS196_CLASS_NAMES = (
    "AM General Hummer SUV 2000",
    "Acura RL Sedan 2012",
    "Acura TL Sedan 2012",
    "Acura TL Type-S 2008",
    "Acura TSX Sedan 2012",
    "Acura Integra Type R 2001",
    "Acura ZDX Hatchback 2012",
    "Aston Martin V8 Vantage Convertible 2012",
    "Aston Martin V8 Vantage Coupe 2012",
    "Aston Martin Virage Convertible 2012",
    "Aston Martin Virage Coupe 2012",
    "Audi RS 4 Convertible 2008",
    "Audi A5 Coupe 2012",
    "Audi TTS Coupe 2012",
    "Audi R8 Coupe 2012",
    "Audi V8 Sedan 1994",
    "Audi 100 Sedan 1994",
    "Audi 100 Wagon 1994",
    "Audi TT Hatchback 2011",
    "Audi S6 Sedan 2011",
    "Audi S5 Convertible 2012",
    "Audi S5 Coupe 2012",
    "Audi S4 Sedan 2012",
    "Audi S4 Sedan 2007",
    "Audi TT RS Coupe 2012",
    "BMW ActiveHybrid 5 Sedan 2012",
    "BMW 1 Series Convertible 2012",
    "BMW 1 Series Coupe 2012",
    "BMW 3 Series Sedan 2012",
    "BMW 3 Series Wagon 2012",
    "BMW 6 Series Convertible 2007",
    "BMW X5 SUV 2007",
    "BMW X6 SUV 2012",
    "BMW M3 Coupe 2012",
    "BMW M5 Sedan 2010",
    "BMW M6 Convertible 2010",
    "BMW X3 SUV 2012",
    "BMW Z4 Convertible 2012",
    "Bentley Continental Supersports Conv. Convertible 2012",
    "Bentley Arnage Sedan 2009",
    "Bentley Mulsanne Sedan 2011",
    "Bentley Continental GT Coupe 2012",
    "Bentley Continental GT Coupe 2007",
    "Bentley Continental Flying Spur Sedan 2007",
    "Bugatti Veyron 16.4 Convertible 2009",
    "Bugatti Veyron 16.4 Coupe 2009",
    "Buick Regal GS 2012",
    "Buick Rainier SUV 2007",
    "Buick Verano Sedan 2012",
    "Buick Enclave SUV 2012",
    "Cadillac CTS-V Sedan 2012",
    "Cadillac SRX SUV 2012",
    "Cadillac Escalade EXT Crew Cab 2007",
    "Chevrolet Silverado 1500 Hybrid Crew Cab 2012",
    "Chevrolet Corvette Convertible 2012",
    "Chevrolet Corvette ZR1 2012",
    "Chevrolet Corvette Ron Fellows Edition Z06 2007",
    "Chevrolet Traverse SUV 2012",
    "Chevrolet Camaro Convertible 2012",
    "Chevrolet HHR SS 2010",
    "Chevrolet Impala Sedan 2007",
    "Chevrolet Tahoe Hybrid SUV 2012",
    "Chevrolet Sonic Sedan 2012",
    "Chevrolet Express Cargo Van 2007",
    "Chevrolet Avalanche Crew Cab 2012",
    "Chevrolet Cobalt SS 2010",
    "Chevrolet Malibu Hybrid Sedan 2010",
    "Chevrolet TrailBlazer SS 2009",
    "Chevrolet Silverado 2500HD Regular Cab 2012",
    "Chevrolet Silverado 1500 Classic Extended Cab 2007",
    "Chevrolet Express Van 2007",
    "Chevrolet Monte Carlo Coupe 2007",
    "Chevrolet Malibu Sedan 2007",
    "Chevrolet Silverado 1500 Extended Cab 2012",
    "Chevrolet Silverado 1500 Regular Cab 2012",
    "Chrysler Aspen SUV 2009",
    "Chrysler Sebring Convertible 2010",
    "Chrysler Town and Country Minivan 2012",
    "Chrysler 300 SRT-8 2010",
    "Chrysler Crossfire Convertible 2008",
    "Chrysler PT Cruiser Convertible 2008",
    "Daewoo Nubira Wagon 2002",
    "Dodge Caliber Wagon 2012",
    "Dodge Caliber Wagon 2007",
    "Dodge Caravan Minivan 1997",
    "Dodge Ram Pickup 3500 Crew Cab 2010",
    "Dodge Ram Pickup 3500 Quad Cab 2009",
    "Dodge Sprinter Cargo Van 2009",
    "Dodge Journey SUV 2012",
    "Dodge Dakota Crew Cab 2010",
    "Dodge Dakota Club Cab 2007",
    "Dodge Magnum Wagon 2008",
    "Dodge Challenger SRT8 2011",
    "Dodge Durango SUV 2012",
    "Dodge Durango SUV 2007",
    "Dodge Charger Sedan 2012",
    "Dodge Charger SRT-8 2009",
    "Eagle Talon Hatchback 1998",
    "FIAT 500 Abarth 2012",
    "FIAT 500 Convertible 2012",
    "Ferrari FF Coupe 2012",
    "Ferrari California Convertible 2012",
    "Ferrari 458 Italia Convertible 2012",
    "Ferrari 458 Italia Coupe 2012",
    "Fisker Karma Sedan 2012",
    "Ford F-450 Super Duty Crew Cab 2012",
    "Ford Mustang Convertible 2007",
    "Ford Freestar Minivan 2007",
    "Ford Expedition EL SUV 2009",
    "Ford Edge SUV 2012",
    "Ford Ranger SuperCab 2011",
    "Ford GT Coupe 2006",
    "Ford F-150 Regular Cab 2012",
    "Ford F-150 Regular Cab 2007",
    "Ford Focus Sedan 2007",
    "Ford E-Series Wagon Van 2012",
    "Ford Fiesta Sedan 2012",
    "GMC Terrain SUV 2012",
    "GMC Savana Van 2012",
    "GMC Yukon Hybrid SUV 2012",
    "GMC Acadia SUV 2012",
    "GMC Canyon Extended Cab 2012",
    "Geo Metro Convertible 1993",
    "HUMMER H3T Crew Cab 2010",
    "HUMMER H2 SUT Crew Cab 2009",
    "Honda Odyssey Minivan 2012",
    "Honda Odyssey Minivan 2007",
    "Honda Accord Coupe 2012",
    "Honda Accord Sedan 2012",
    "Hyundai Veloster Hatchback 2012",
    "Hyundai Santa Fe SUV 2012",
    "Hyundai Tucson SUV 2012",
    "Hyundai Veracruz SUV 2012",
    "Hyundai Sonata Hybrid Sedan 2012",
    "Hyundai Elantra Sedan 2007",
    "Hyundai Accent Sedan 2012",
    "Hyundai Genesis Sedan 2012",
    "Hyundai Sonata Sedan 2012",
    "Hyundai Elantra Touring Hatchback 2012",
    "Hyundai Azera Sedan 2012",
    "Infiniti G Coupe IPL 2012",
    "Infiniti QX56 SUV 2011",
    "Isuzu Ascender SUV 2008",
    "Jaguar XK XKR 2012",
    "Jeep Patriot SUV 2012",
    "Jeep Wrangler SUV 2012",
    "Jeep Liberty SUV 2012",
    "Jeep Grand Cherokee SUV 2012",
    "Jeep Compass SUV 2012",
    "Lamborghini Reventon Coupe 2008",
    "Lamborghini Aventador Coupe 2012",
    "Lamborghini Gallardo LP 570-4 Superleggera 2012",
    "Lamborghini Diablo Coupe 2001",
    "Land Rover Range Rover SUV 2012",
    "Land Rover LR2 SUV 2012",
    "Lincoln Town Car Sedan 2011",
    "MINI Cooper Roadster Convertible 2012",
    "Maybach Landaulet Convertible 2012",
    "Mazda Tribute SUV 2011",
    "McLaren MP4-12C Coupe 2012",
    "Mercedes-Benz 300-Class Convertible 1993",
    "Mercedes-Benz C-Class Sedan 2012",
    "Mercedes-Benz SL-Class Coupe 2009",
    "Mercedes-Benz E-Class Sedan 2012",
    "Mercedes-Benz S-Class Sedan 2012",
    "Mercedes-Benz Sprinter Van 2012",
    "Mitsubishi Lancer Sedan 2012",
    "Nissan Leaf Hatchback 2012",
    "Nissan NV Passenger Van 2012",
    "Nissan Juke Hatchback 2012",
    "Nissan 240SX Coupe 1998",
    "Plymouth Neon Coupe 1999",
    "Porsche Panamera Sedan 2012",
    "Ram C/V Cargo Van Minivan 2012",
    "Rolls-Royce Phantom Drophead Coupe Convertible 2012",
    "Rolls-Royce Ghost Sedan 2012",
    "Rolls-Royce Phantom Sedan 2012",
    "Scion xD Hatchback 2012",
    "Spyker C8 Convertible 2009",
    "Spyker C8 Coupe 2009",
    "Suzuki Aerio Sedan 2007",
    "Suzuki Kizashi Sedan 2012",
    "Suzuki SX4 Hatchback 2012",
    "Suzuki SX4 Sedan 2012",
    "Tesla Model S Sedan 2012",
    "Toyota Sequoia SUV 2012",
    "Toyota Camry Sedan 2012",
    "Toyota Corolla Sedan 2012",
    "Toyota 4Runner SUV 2012",
    "Volkswagen Golf Hatchback 2012",
    "Volkswagen Golf Hatchback 1991",
    "Volkswagen Beetle Hatchback 2012",
    "Volvo C30 Hatchback 2012",
    "Volvo 240 Sedan 1993",
    "Volvo XC90 SUV 2007",
    "smart fortwo Convertible 2012",
)
