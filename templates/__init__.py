"""The site's Jinja templates (edited here, shipped in the package as microscope.templates)."""
