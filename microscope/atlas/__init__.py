"""Activation atlases (issue 14, under way): what a layer represents on real photos, laid out in 2D.

`reservoir.py` keeps a uniform, seeded, mergeable sample of a layer's activation vectors from a stream;
`layout.py` lays them out with UMAP and averages them over a grid of cells. The examples pass
draws the sample while it ranks examples (`examples/accumulator.py`, AtlasSampling) and stores it
(`store/atlas.py`); `compute.py` lays a stored sample out (`lay_out`: AtlasLayout, AtlasResult); the
icons, the view that runs it and the atlas page are still to come.
"""
