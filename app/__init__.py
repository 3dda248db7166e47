"""The DML Explorer Streamlit app: pages under ``app/pages``, pure helpers beside them."""
