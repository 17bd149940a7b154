"""Training: the optimisation loops, data-parallel processes, and the trainer that turns a recipe into a version."""
