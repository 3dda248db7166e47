"""DML Explorer: ``streamlit run app/main.py`` (``make app``). One module per page under app/views.

The server listens on 127.0.0.1 (``app/.streamlit/config.toml``); see :mod:`app.server` for how
to expose it deliberately.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:  # `streamlit run` puts app/ on the path, not the repository
    sys.path.insert(0, _REPO)

import streamlit as st  # noqa: E402

from app.projection import start_warmup  # noqa: E402
from app.server import is_loopback, own_exposure_problem  # noqa: E402

st.set_page_config(page_title="DML Explorer", layout="wide")
configured_address = st.get_option("server.address")
problem = own_exposure_problem(configured_address)
if problem is not None:
    st.error(problem)
    st.stop()
if configured_address and configured_address != "localhost" and not is_loopback(configured_address):
    st.sidebar.warning(
        f"Listening on {configured_address}: anyone who reaches it can start training runs."
    )

PAGES = [
    st.Page("views/toy_lab.py", title="Toy lab", icon=":material/science:", default=True),
    st.Page("views/train.py", title="Train", icon=":material/model_training:"),
    st.Page("views/inspect.py", title="Inspect", icon=":material/search:"),
    st.Page("views/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("views/study.py", title="Study", icon=":material/query_stats:", url_path="study"),
]
try:
    st.navigation(PAGES).run()
finally:  # UMAP's kernels load once the first page is drawn, never competing with it
    start_warmup()
