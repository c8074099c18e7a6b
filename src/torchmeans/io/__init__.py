"""Files: model files, fit checkpoints, data files (all read as untrusted input)."""
