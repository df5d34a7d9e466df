"""dgn: deep generative networks that show what an image classifier has learned (Despraz et al. 2017).

The library, with the command line on top (``dgn --help``)::

    import dgn
    clf = dgn.load_classifier("efficientnet_lite0")
    result = dgn.render(clf, "golden retriever", steps=300, seed=0)
    result.save("golden")

Objects: classifiers (:func:`load_classifier`, :func:`classifier` for a ``keras.Model``), objectives
(:mod:`dgn.objectives`: ``ClassObjective``, ``ChannelObjective``, ``NeuronObjective``, composed with
``+`` and ``*``, or target strings), parameterizations (:mod:`dgn.param`: ``Generator``, ``Pixels``,
``Fourier``), transforms (:mod:`dgn.transforms`: ``Jitter``, ``Scale``, ``Rotate``, ``Pad``,
``compose``), callbacks (:mod:`dgn.callbacks`), and :func:`render`, which runs them; attribution maps of
real photos (:func:`explain`: saliency, SmoothGrad, guided backpropagation, integrated gradients, Grad-CAM,
Grad-CAM++, Score-CAM, occlusion) on the same classifiers and objectives.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "render": ("dgn.rendering", "render"),
    "Rendering": ("dgn.rendering", "Rendering"),
    "load_classifier": ("dgn.classifiers", "load_classifier_named"),
    "classifier": ("dgn.classifiers", "classifier"),
    "Classifier": ("dgn.classifiers", "Classifier"),
    "parse_target": ("dgn.objectives", "parse_target"),
    "explain": ("dgn.attribution", "explain"),
    "attribute": ("dgn.attribution", "attribute"),
}


def __getattr__(name):
    """The public API, imported on first use (``import dgn`` alone does not start Keras)."""
    if name in _EXPORTS:
        import importlib

        module, attr = _EXPORTS[name]
        return getattr(importlib.import_module(module), attr)
    if name in ("param", "transforms", "callbacks", "objectives", "attribution"):
        import importlib

        return importlib.import_module(f"dgn.{name}")
    raise AttributeError(f"module 'dgn' has no attribute {name!r}")


__all__ = list(_EXPORTS) + ["param", "transforms", "callbacks", "objectives", "attribution", "__version__"]
