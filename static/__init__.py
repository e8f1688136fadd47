"""The site's CSS, scripts and icon (edited here, shipped in the package as microscope.static)."""
