"""Pure figure builders of the app (no Streamlit): numpy in, plotly figures or HTML strings out.

One module per concept: ``palette`` (colours, compact layout), ``labels`` (wrapped titles, log and
whole-number ticks), ``images`` (HTML thumbnail strips), ``curves`` (metrics over training),
``spectrum``, ``projection`` (2-D layouts and Inspect's projection), ``density`` (per-class
figures), ``animation`` (the one player: frames, ▶/❚❚ buttons and a step slider), and the Toy
lab's ``toy`` (inputs, losses, seed strip) and ``replay``.
"""

from app.figures.curves import CURVE_PANELS, curves_figure, history_figure
from app.figures.density import density_figure, per_class_delta_figure
from app.figures.images import confusion_html, retrieval_grid_html, thumbnails_html
from app.figures.labels import integer_ticks, log_axis, wrap_title
from app.figures.palette import HIT_BORDER, MISS_BORDER, QUERY_BORDER
from app.figures.projection import (
    COLOR_MODES,
    common_extent,
    inspect_projection_figure,
    projection_figure,
)
from app.figures.spectrum import spectrum_figure

# transitional: callers move to the submodules (these are the names other modules call as
# ``figures.X``; new code imports from the submodule).
__all__ = [
    "COLOR_MODES",
    "CURVE_PANELS",
    "HIT_BORDER",
    "MISS_BORDER",
    "QUERY_BORDER",
    "common_extent",
    "confusion_html",
    "curves_figure",
    "density_figure",
    "history_figure",
    "inspect_projection_figure",
    "integer_ticks",
    "log_axis",
    "per_class_delta_figure",
    "projection_figure",
    "retrieval_grid_html",
    "spectrum_figure",
    "thumbnails_html",
    "wrap_title",
]
