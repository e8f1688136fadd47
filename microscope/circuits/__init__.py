"""Circuits: expanded weights between consecutive layers (Distill, "Visualizing Weights"). linear.py makes the
network between two layers linear; expanded.py computes every map from it. The view is microscope/views/circuits.py."""
