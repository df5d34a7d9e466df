"""dgn: deep generative networks that show what an image classifier has learned (Despraz et al. 2017).

The library, with the command line on top (``dgn --help``)::

    import dgn
    clf = dgn.load_classifier("efficientnet_lite0")
    result = dgn.render(clf, "golden retriever", steps=300, seed=0)
    result.save("golden")

Objects: classifiers (:func:`load_classifier`, :func:`classifier` for a ``keras.Model``), objectives
(:mod:`dgn.optvis.objectives`, also ``dgn.optvis.objectives``: ``ClassObjective``, ``ChannelObjective``, ``NeuronObjective``, composed with
``+`` and ``*``, or target strings), parameterizations (:mod:`dgn.optvis.param`, ``dgn.optvis.param``: ``Generator``, ``Pixels``,
``Fourier``), transforms (:mod:`dgn.optvis.transforms`: ``Jitter``, ``Scale``, ``Rotate``, ``Pad``,
``compose``), callbacks (:mod:`dgn.optvis.callbacks`), and :func:`render`, which runs them; attribution maps of
real photos (:func:`explain`: saliency, SmoothGrad, guided backpropagation, integrated gradients, Grad-CAM,
Grad-CAM++, Score-CAM, occlusion) on the same classifiers and objectives.
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

_EXPORTS = {
    "render": ("dgn.optvis.render", "render"),
    "Rendering": ("dgn.optvis.render", "Rendering"),
    "load_classifier": ("dgn.classifiers", "load_classifier_named"),
    "classifier": ("dgn.classifiers", "classifier"),
    "Classifier": ("dgn.classifiers", "Classifier"),
    "parse_target": ("dgn.optvis.objectives", "parse_target"),
    "explain": ("dgn.attribution.maps", "explain"),
    "attribute": ("dgn.attribution.maps", "attribute"),
}


# The visualization core's public modules by their short names (lucid's ``optvis.objectives`` etc.):
# ``from dgn.param import Fourier`` is ``from dgn.optvis.param import Fourier``, the same module objects.
MODULE_ALIASES = {"dgn.objectives": "dgn.optvis.objectives", "dgn.param": "dgn.optvis.param",
                  "dgn.transforms": "dgn.optvis.transforms", "dgn.callbacks": "dgn.optvis.callbacks"}


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``dgn.optvis.param`` (and its submodules) as the module ``dgn.optvis.param`` itself."""

    @staticmethod
    def _target(name):
        for alias, real in MODULE_ALIASES.items():
            if name == alias or name.startswith(alias + "."):
                return real + name[len(alias):]
        return None

    def find_spec(self, name, path=None, target=None):
        real = self._target(name)
        return importlib.util.spec_from_loader(name, self) if real else None

    def create_module(self, spec):
        return importlib.import_module(self._target(spec.name))

    def exec_module(self, module):
        """Nothing to run: the module was imported under its real name."""


if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
    sys.meta_path.append(_AliasFinder())


def __getattr__(name):
    """The public API, imported on first use (``import dgn`` alone does not start Keras)."""
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = globals()[name] = getattr(importlib.import_module(module), attr)   # once: a plain attribute after
        return value
    if f"dgn.{name}" in MODULE_ALIASES or name in ("attribution", "cli"):   # dgn.cli.main(): a script's CLI
        return importlib.import_module(f"dgn.{name}")
    raise AttributeError(f"module 'dgn' has no attribute {name!r}")


def command_line():
    """The ``dgn`` console script (and ``python -m dgn``): loads the command line, then runs
    :func:`dgn.cli.main`. A Ctrl-C while it loads (NumPy, YAML: about a second) ends in one line and exit
    code 130, as one during the command does, not in the import's traceback."""
    try:
        cli = importlib.import_module("dgn.cli")
    except KeyboardInterrupt:
        print("dgn: interrupted", file=sys.stderr)
        return 130
    return cli.main()


__all__ = list(_EXPORTS) + ["param", "transforms", "callbacks", "objectives", "attribution", "__version__"]
