"""Guided backpropagation (Springenberg et al. 2014)."""


from dgn.attribution.methods.saliency import Saliency
from dgn.attribution.settings import register


@register
class Guided(Saliency):
    """The gradient with every ReLU passing back only positive gradients where its input was positive;
    ``max_c |.|``. Handled: ReLU and ReLU6 (``activation="relu"`` / ``"relu6"`` of any layer,
    ``Activation``, ``keras.layers.ReLU`` without a negative slope or threshold); a classifier with another
    activation on the way to its logits (swish, GELU, leaky ReLU, sigmoid, tanh, ...) is refused in one
    line. Nonlinearities hidden inside custom layers are not seen (their ordinary gradient is used)."""

    name = "guided"
    aliases = ("guided_backprop", "guided-backprop", "guided_backpropagation")
    reference = "Springenberg et al. 2014"
    guided = True
