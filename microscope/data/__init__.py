"""Data in: image folders and their decoding, dataset labels, patch packs, unit labels."""
