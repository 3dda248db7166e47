"""DML Explorer: ``streamlit run app/main.py`` (``make app``). One module per page under app/views."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import streamlit as st  # noqa: E402

from app.projection import start_warmup  # noqa: E402

st.set_page_config(page_title="DML Explorer", layout="wide")
start_warmup()

PAGES = [
    st.Page("views/toy_lab.py", title="Toy lab", icon=":material/science:", default=True),
    st.Page("views/train.py", title="Train", icon=":material/model_training:"),
    st.Page("views/inspect.py", title="Inspect", icon=":material/search:"),
    st.Page("views/compare.py", title="Compare", icon=":material/compare:"),
]
st.navigation(PAGES).run()
