"""The DML Explorer Streamlit app: one module per page under ``app/views``; beside them the pure
helpers (settings, cache, checkpoints, runs, projection, analysis, figures, server) and the
Streamlit panels the pages share (panels)."""
