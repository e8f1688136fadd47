"""Template partials, one per view (microscope/views)."""
