"""Feature visualization with Lucid's recipe: the image that most excites each unit.

Small modules, one idea each: `param` (Fourier image), `color` (decorrelated colour), `transform`
(random jitter, scale, rotation), `objectives` (what to maximise, and the registry of objectives
rendered per unit), `alpha` (transparent renders: random backgrounds, compositing, the opacity
penalty), `render` (the optimisation loop), `recipe` (every number, versioned) and
`batch` (one batch of units, seeded); `stored` reads renders back and `panel` shows them on a unit
page (both without torch: the site's half of the view). The view's compute half, which plans renders and
stores them, is microscope/views/featurevis.py.
"""
