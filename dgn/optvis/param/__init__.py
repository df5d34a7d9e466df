"""Image parameterizations: what the optimizer changes to make an image (lucid's ``optvis.param``).

Each is a small object, chosen by kind through one registry (:data:`PARAMETERIZATIONS`), whose
``build(classifier, rows, seed)`` gives a Keras model mapping a constant input f0 to ``rows`` images
(rows, H, W, C) in D's input space at D's input size, the f0 to feed it, and the callbacks the
optimization loop runs between steps (:mod:`dgn.optvis.callbacks`). ``optimize(...)`` runs it under the
one loop (:func:`dgn.optvis.optimize.optimize`), with transforms between the image and D.

One module per family, each registering itself with :func:`register` (this package imports them all):

- :class:`Generator` (:mod:`.generator`): the paper's G (Despraz et al. 2017, section 3), all of G
  trained (``trainable="all"``, the configuration without pretraining) or, with a trained decoder
  (``decoder_weights``) and ``trainable="alpha"``, only the feature scale alpha (with pretraining).
- :class:`Pixels` (:mod:`.pixels`): the pixels themselves (Simonyan et al. 2013; Yosinski et al.
  2015), with their regularizers and octaves.
- :class:`Fourier` (:mod:`.fourier`): lucid's 1/f-scaled, colour-decorrelated spectrum (Olah et al. 2017).
- :class:`Maco` (:mod:`.maco`): MACO's phase-only spectrum under natural photos' fixed magnitude, random
  crops and noise, and its transparency map (Fel et al. 2023).

The dataclass fields of each are the keys of its config section (``generator:``, ``pixel:``,
``fourier:``, ``maco:``) with the same defaults; :mod:`dgn.build` makes them from a config.
"""

from dgn.optvis.param.base import PARAMETERIZATIONS, Built, Parameterization, fixed_input_size, get, register
# The families, each registered by its import, in the order error messages list the kinds in.
from dgn.optvis.param.generator import Generator, load_code_stats  # isort: skip
from dgn.optvis.param.pixels import PixelHook, PixelImage, Pixels  # isort: skip
from dgn.optvis.param.fourier import Fourier, FourierImage  # isort: skip
from dgn.optvis.param.maco import Maco, MacoImage  # isort: skip

__all__ = ["PARAMETERIZATIONS", "Built", "Parameterization", "fixed_input_size", "get", "register", "Generator",
           "load_code_stats", "Pixels", "PixelImage", "PixelHook", "Fourier", "FourierImage",
           "Maco", "MacoImage"]
