"""``sop``: Stanford Online Products (Oh Song et al. 2016); train = Ebay_train.txt, test = Ebay_test.txt.

The list files (header, then ``image_id class_id super_class_id path`` per line) sit at ``<root>``
(the authors' archive) or in ``<root>/Info_Files/`` (the paper code's layout, images under
``<root>/images/``). Image paths are resolved against ``<root>`` or ``<root>/images``, whichever
holds the first listed image.
"""

from __future__ import annotations

from pathlib import Path

from dml_core.data.base import DATASETS, ImageFileDataset, Transform, check_split, require_root

SOP_LAYOUT = """\
  <root>/Ebay_train.txt, <root>/Ebay_test.txt, <root>/<category>_final/*.JPG   (authors'), or
  <root>/Info_Files/Ebay_{train,test}.txt, <root>/images/<category>_final/*.JPG (paper code)
  list columns: image_id class_id super_class_id path   (first line is a header)"""


def find_list_file(root: Path, split: str) -> Path:
    """``Ebay_train.txt`` for train/eval_train, ``Ebay_test.txt`` for test, at root or Info_Files."""
    file_name = "Ebay_test.txt" if split == "test" else "Ebay_train.txt"
    for folder in (root, root / "Info_Files"):
        if (folder / file_name).is_file():
            return folder / file_name
    raise FileNotFoundError(f"no {file_name} under {str(root)!r}; expected:\n{SOP_LAYOUT}")


def read_product_list(list_file: Path) -> list[tuple[str, int]]:
    """(relative image path, class id) per line, header skipped."""
    rows = []
    lines = list_file.read_text().splitlines()
    for line_number, line in enumerate(lines[1:], start=2):
        columns = line.split()
        if not columns:
            continue
        if len(columns) != 4:
            raise ValueError(
                f"{list_file}:{line_number}: expected 4 columns "
                f"(image_id class_id super_class_id path), got {len(columns)}"
            )
        rows.append((columns[3], int(columns[1])))
    return rows


def image_base(root: Path, first_path: str) -> Path:
    """The folder the list's relative paths start from: ``root`` or ``root/images``."""
    for base in (root, root / "images"):
        if (base / first_path).is_file():
            return base
    raise FileNotFoundError(
        f"listed image {first_path!r} found neither under {str(root)!r} nor its images/; "
        f"expected:\n{SOP_LAYOUT}"
    )


def product_class_name(relative_path: str, class_id: int) -> str:
    """``<category>/<class id>``, e.g. ``bicycle/1`` for ``bicycle_final/111085122871_0.JPG``."""
    category = Path(relative_path).parts[0].removesuffix("_final")
    return f"{category}/{class_id}"


@DATASETS.register("sop")
class SopDataset(ImageFileDataset):
    """Stanford Online Products with the official train/test class split."""

    name = "sop"

    def __init__(
        self,
        root: str | Path | None = None,
        split: str = "train",
        transform: Transform | None = None,
        image_size: int = 224,
        verify: bool = False,
    ) -> None:
        check_split(split)
        folder = require_root(root, self.name, SOP_LAYOUT)
        list_file = find_list_file(folder, split)
        rows = read_product_list(list_file)
        if not rows:
            raise ValueError(f"{list_file} lists no images; expected:\n{SOP_LAYOUT}")
        base = image_base(folder, rows[0][0])
        name_of = {class_id: product_class_name(path, class_id) for path, class_id in rows}
        files = [(base / path, name_of[class_id]) for path, class_id in rows]
        super().__init__(
            files,
            [name_of[class_id] for class_id in sorted(name_of)],
            root=folder,
            split=split,
            transform=transform,
            image_size=image_size,
            verify=verify,
        )
