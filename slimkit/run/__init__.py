"""Running a job: YAML configs, checks before work, the pipeline, run folders, the CLI and its launcher."""
