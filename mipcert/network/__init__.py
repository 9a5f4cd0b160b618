"""The ``Network`` and its reference semantics (numpy, float64)."""
from .layers import Affine, Dense, Flatten, Layer, ReLU, Reshape
from .network import AffineBlock, Network
from .params import Parameters


def mlp(weights, biases, input_shape=None) -> Network:
    """A plain ReLU MLP from lists of ``W_l`` ``(out, in)`` and ``b_l`` ``(out,)``.

    ReLU after every layer but the last.
    """
    layers = []
    for i, (W, b) in enumerate(zip(weights, biases)):
        layers.append(Dense(W, b))
        if i < len(weights) - 1:
            layers.append(ReLU())
    shape = input_shape if input_shape is not None else (layers[0].W.shape[1],)
    return Network(layers, shape)


__all__ = ["Affine", "AffineBlock", "Dense", "Flatten", "Layer", "Network", "Parameters", "ReLU",
           "Reshape", "mlp"]
