"""``sop``: Stanford Online Products (Oh Song et al. 2016); train = Ebay_train.txt, test = Ebay_test.txt.

The list files (header, then ``image_id class_id super_class_id path`` per line) sit in a folder F
(the authors' archive) or in ``F/Info_Files/`` (the paper code's layout, images under
``F/images/``), F being ``<root>`` or its sub-folder ``Stanford_Online_Products`` (the archive's
name) or ``online_products`` (the folder the paper's code is given). Image paths are resolved
against F or ``F/images``, whichever holds the first listed image's category folder.
"""

from __future__ import annotations

from pathlib import Path

from dml_core.data.base import DATASETS, RootedImageDataset, candidate_folders, nothing_found

CHILD_FOLDERS = ("Stanford_Online_Products", "online_products")
SOP_LAYOUT = (
    "Ebay_train.txt, Ebay_test.txt and <category>_final/*.JPG (the authors' archive) or "
    "Info_Files/Ebay_{train,test}.txt and images/<category>_final/*.JPG (the paper code's "
    "layout), in <root>, <root>/Stanford_Online_Products or <root>/online_products"
)


def find_list_file(root: Path, split: str) -> Path:
    """``Ebay_train.txt`` for train/eval_train, ``Ebay_test.txt`` for test, in a candidate folder
    or its ``Info_Files/``."""
    file_name = "Ebay_test.txt" if split == "test" else "Ebay_train.txt"
    for folder in candidate_folders(root, CHILD_FOLDERS):
        for place in (folder, folder / "Info_Files"):
            if (place / file_name).is_file():
                return place / file_name
    raise nothing_found(
        "Stanford Online Products", f"{file_name} (or Info_Files/{file_name})", root, CHILD_FOLDERS
    )


def read_product_list(list_file: Path) -> list[tuple[str, int]]:
    """(relative image path, class id) per line, header skipped."""
    rows = []
    lines = list_file.read_text().splitlines()
    for line_number, line in enumerate(lines[1:], start=2):
        columns = line.split()
        if not columns:
            continue
        if len(columns) != 4 or not columns[1].isdigit():
            raise ValueError(
                f"{list_file}:{line_number}: expected 'image_id class_id super_class_id path' "
                f"with an integer class_id, got {line.strip()!r}"
            )
        rows.append((columns[3], int(columns[1])))
    return rows


def image_base(folder: Path, first_path: str) -> Path:
    """The folder the list's relative paths start from: ``folder`` or ``folder/images`` (decided
    by the first listed image's category folder, so a missing first image does not matter)."""
    category = Path(first_path).parent
    for base in (folder, folder / "images"):
        if (base / category).is_dir():
            return base
    raise FileNotFoundError(
        f"the folder {str(category)!r} of the listed images is neither in {str(folder)!r} nor in "
        f"{str(folder / 'images')!r}; expected {SOP_LAYOUT}"
    )


def product_class_name(relative_path: str, class_id: int) -> str:
    """``<category>/<class id>``, e.g. ``bicycle/1`` for ``bicycle_final/111085122871_0.JPG``."""
    category = Path(relative_path).parts[0].removesuffix("_final")
    return f"{category}/{class_id}"


@DATASETS.register("sop")
class SopDataset(RootedImageDataset):
    """Stanford Online Products with the official train/test class split."""

    layout = SOP_LAYOUT

    def split_files(self, folder: Path, split: str) -> tuple[list[tuple[Path, str]], list[str]]:
        """The images of ``Ebay_train.txt`` (train, eval_train) or ``Ebay_test.txt`` (test), each
        class named ``<category>/<class id>``, classes in class-id order."""
        list_file = find_list_file(folder, split)
        rows = read_product_list(list_file)
        if not rows:
            raise ValueError(f"{list_file} lists no images; expected {SOP_LAYOUT}")
        data_folder = list_file.parent
        if data_folder.name == "Info_Files":
            data_folder = data_folder.parent
        base = image_base(data_folder, rows[0][0])
        name_of = {class_id: product_class_name(path, class_id) for path, class_id in rows}
        files = [(base / path, name_of[class_id]) for path, class_id in rows]
        return files, [name_of[class_id] for class_id in sorted(name_of)]
