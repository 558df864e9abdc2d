"""Training scripts for the models shipped in gscodec (not installed with the package)."""
