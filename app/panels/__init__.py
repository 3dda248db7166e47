"""Drawing pieces of the app's pages (Streamlit): ``common`` (opening a source, spectrum, density and
selection panels), ``inspect``, ``compare``, ``projection`` (layouts, scatter, snapshot player),
``study`` and ``player`` (the one animation player on a page). Figures come from :mod:`app.figures`."""
