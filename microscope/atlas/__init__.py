"""Activation atlases: what a layer represents on real photos, laid out in 2D (Carter et al., 2019).

The examples pass draws a uniform, seeded, mergeable sample of each layer's activation vectors
(`reservoir.py`; `examples/accumulator.py`, AtlasSampling; stored by `store/atlas.py`). The atlas view's
compute half (`views/atlas.py`) then runs three stages per layer: `compute.py` lays the sample out
(UMAP and the grids' cell means from `layout.py`), `describe.py` describes each cell (`cells.py`:
nearest units, class attribution from `attribution.py`, patches), `icons.py` renders each cell's
mean. `stored.py` reads an atlas back without torch and `page.py`, the view's show half, writes its
page on the site.
"""
