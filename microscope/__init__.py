"""microscope: map every unit of an image classifier into a static website.

In a notebook: `microscope.open_store("artifacts")` (see microscope/api.py).
"""

__version__ = "0.1.0"


def open_store(path="artifacts"):
    """The artifact store as Python objects: models, layers, units, their arrays and images."""
    from microscope.api import open_store as open_

    return open_(path)
