"""A run: the request, the session, jobs, executors, the plan's estimate, the preview, the pipeline, verify."""
