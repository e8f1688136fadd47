"""Torch-free pieces of the web pages that views' panels and the site share: images for the web, SVG charts."""
