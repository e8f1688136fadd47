"""Sparse autoencoders over a layer's activations: directions cleaner than single neurons.

`model.py` holds the TopK sparse autoencoder and its losses. A trained SAE joins a loaded network
as a derived layer (`Network.derive`), so every view treats its features as units.
"""
