"""Files the workbench runs inside a job's own process: each is a real module (linted, type-checked),
copied into the job's folder or run by its path, never imported by the workbench itself."""
