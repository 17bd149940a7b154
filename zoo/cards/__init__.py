"""Cards: the model card of a version, its figures, and versions compared side by side."""
