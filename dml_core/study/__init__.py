"""Studies: the paper's fair-comparison protocol for any methods and dataset (docs/DESIGN.md §5).

``load_spec`` reads a study file (YAML), ``load_runs`` its finished runs' summaries; ``runner``
trains the missing runs, ``page`` writes the results page. ``python -m dml_core study …`` is the
command line.
"""

from dml_core.study.spec import StudyError, StudySpec, load_spec
from dml_core.study.summaries import RunSummary, load_runs

__all__ = ["RunSummary", "StudyError", "StudySpec", "load_runs", "load_spec"]
