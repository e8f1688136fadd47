"""Views: every kind of result microscope computes, stores and shows, one module each.

microscope/view.py says what a view is; registry.py lists the views (`VIEWS`); docs/architecture.md says
where a new one goes. This __init__ imports nothing, so that importing one view does not import them all.
"""
