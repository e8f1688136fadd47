"""What the passes over the data keep of a layer's activations, shared by the dataset examples, the SAE
and the atlas: seeded random inner positions of each image (`positions.py`) and a seeded, mergeable
uniform sample of vectors (`reservoir.py`)."""
