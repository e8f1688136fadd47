"""What a unit is: concepts from the dataset's classes and their WordNet ancestors (vocabulary.py), each
unit's concepts chosen on one half of the images and scored on the other (scoring.py), how units go
together (similarity.py: their correlation over positions, nearest units, families), and the show half
(panel.py). Computed in the examples pass's summaries (microscope/examples/steps.py); torch-free."""
