"""dgn: deep generative networks that show what an image classifier has learned (Despraz et al. 2017)."""

__version__ = "0.1.0"
