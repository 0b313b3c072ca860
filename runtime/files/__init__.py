"""Files that are safe to write: checks before work, staging beside the target and atomic rename."""
