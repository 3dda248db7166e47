"""Pure figure builders of the app (no Streamlit): numpy in, plotly figures or HTML strings out.

One module per concept: ``palette`` (colours, compact layout), ``labels`` (wrapped titles, log and
whole-number ticks), ``images`` (HTML thumbnail strips), ``curves`` (metrics over training),
``spectrum``, ``projection`` (2-D layouts and Inspect's projection), ``density`` (per-class
figures), ``animation`` (the one player: frames, ▶/❚❚ buttons and a step slider), and the Toy
lab's ``toy`` (inputs, losses, seed strip) and ``replay``.
"""
