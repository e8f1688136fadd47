"""Caricatures and DeepDreams of a set of photos at a layer: what the layer sees in a photo (OpenAI Microscope's
two per-layer techniques). recipe.py holds every number, photos.py chooses the photos, optimise.py and dream.py
make the images, measure.py says what they do at the layer, stored.py + panel.py read and show them (no torch)."""
