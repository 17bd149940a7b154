"""Exports: the format table, exporting and verifying files, the runtimes that run them, scoring and Triton."""
