"""The zoo's architectures; importing this package registers each of them (one file per model)."""

from zoo.models import himmelblau, lenet, linear_regression, mnist_mlp, tiny_fnn, two_layer_net  # noqa: F401
