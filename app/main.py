"""DML Explorer: `streamlit run app/main.py` (placeholder until the app's pages land)."""

import streamlit as st

st.set_page_config(page_title="DML Explorer", layout="wide")
st.title("DML Explorer")
st.write("Train, compare and inspect deep metric learning methods.")
