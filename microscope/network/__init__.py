"""The network: weights, a loaded model truncated after chosen layers, receptive fields, subgraphs, the layer catalogue."""
