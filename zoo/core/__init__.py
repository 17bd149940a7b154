"""The core: errors, devices, recipes, data sets, the model spec and the registry; every other package builds on it."""
