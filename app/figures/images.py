"""HTML strips of labelled thumbnails: retrieval rows, thumbnail grids, confused class pairs.

An item's picture is a data URI from ``image_uri(index)``; without one the cell is a text box."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

from app.analysis import ConfusedPair, RetrievalRow
from app.figures.palette import HIT_BORDER, MISS_BORDER, QUERY_BORDER

ImageUri = Callable[[int], str] | None


def _uri(image_uri: ImageUri, index: int) -> str | None:
    return None if image_uri is None else image_uri(index)


def cell(uri: str | None, color: str, lines: Sequence[str], size: int = 72) -> str:
    """One labelled thumbnail (or, without an image, a box with the text) with a coloured border."""
    text = "<br>".join(html.escape(line) for line in lines)
    if uri is None:
        picture = (
            f'<div style="width:{size}px;height:{size}px;border:4px solid {color};'
            "display:flex;align-items:center;justify-content:center;font-size:11px;"
            f'box-sizing:content-box">{html.escape(lines[0])}</div>'
        )
    else:
        picture = (
            f'<img src="{uri}" width="{size}" height="{size}" style="border:4px solid {color};'
            'image-rendering:pixelated"/>'
        )
    return (
        '<figure style="margin:0 6px 6px 0;display:inline-block;text-align:center;'
        f'vertical-align:top;width:{size + 8}px">{picture}'
        '<figcaption style="font-size:11px;line-height:1.2;overflow:hidden;'
        f'text-overflow:ellipsis;white-space:nowrap">{text}</figcaption></figure>'
    )


def retrieval_grid_html(
    rows: Sequence[RetrievalRow],
    image_uri: ImageUri,
    class_name: Callable[[int], str] = str,
    caption: Callable[[RetrievalRow], str] | None = None,
    item_class: Callable[[int], int] | None = None,
) -> str:
    """Query (blue border) then its neighbours (green: same class, red: other), each labelled
    with its index, its class (when ``item_class`` maps an index to its label) and distance.
    Without ``image_uri`` the cells are text boxes."""
    lines = []
    for row in rows:
        title = caption(row) if caption else f"query #{row.query}"
        cells = [
            cell(_uri(image_uri, row.query), QUERY_BORDER, [title, class_name(row.query_label)])
        ]
        for neighbor, distance, hit in zip(row.neighbors, row.distances, row.hits, strict=True):
            label = [f"#{neighbor}"]
            if item_class is not None:
                label.append(class_name(item_class(neighbor)))
            label.append(f"d={distance:.3f}")
            cells.append(cell(_uri(image_uri, neighbor), HIT_BORDER if hit else MISS_BORDER, label))
        lines.append('<div style="white-space:nowrap;overflow-x:auto">' + "".join(cells) + "</div>")
    return "\n".join(lines)


def thumbnails_html(
    items: Sequence[int],
    image_uri: ImageUri,
    class_name: Callable[[int], str],
    *,
    size: int = 56,
) -> str:
    """A wrapped strip of thumbnails, each labelled with its index and class."""
    cells = [cell(_uri(image_uri, i), "#dddddd", [f"#{i}", class_name(i)], size) for i in items]
    return '<div style="line-height:0">' + "".join(cells) + "</div>"


def confusion_html(
    pairs: Sequence[ConfusedPair],
    image_uri: ImageUri,
    class_name: Callable[[int], str],
) -> str:
    """One line per confused pair: an example query of the first class, the neighbour of the
    second class it retrieved, and how often that happens."""
    lines = []
    for pair in pairs:
        query = cell(
            _uri(image_uri, pair.example_query),
            QUERY_BORDER,
            [f"#{pair.example_query}", class_name(pair.query_class)],
            56,
        )
        neighbor = cell(
            _uri(image_uri, pair.example_neighbor),
            MISS_BORDER,
            [f"#{pair.example_neighbor}", class_name(pair.retrieved_class)],
            56,
        )
        text = (
            f"<b>{html.escape(class_name(pair.query_class))}</b> → "
            f"<b>{html.escape(class_name(pair.retrieved_class))}</b><br>{pair.count}× "
            f"({100 * pair.share:.1f} % of its top-k)"
        )
        lines.append(
            '<div style="display:flex;align-items:center;gap:8px;margin-bottom:4px">'
            f'{query}<span style="font-size:18px">→</span>{neighbor}'
            f'<div style="font-size:13px">{text}</div></div>'
        )
    return "\n".join(lines)
