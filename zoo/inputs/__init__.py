"""Inputs: digit pictures, pixel arrays and numbers turned into the batch a model takes."""
