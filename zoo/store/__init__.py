"""The store: versioned weights on disk, their manifests, the atomic writer, and loading a version back."""
