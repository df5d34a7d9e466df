"""The visualization core (lucid's ``optvis``): objectives (:mod:`.objectives`), image parameterizations
(:mod:`.param`), transforms (:mod:`.transforms`), the optimization loop (:mod:`.optimize`) with its
callbacks (:mod:`.callbacks`), and :func:`dgn.render` (:mod:`.render`), which runs them. The paper's
generator network is :mod:`.generator` (its layers :mod:`.layers`); the batch engine of ``generate-all``
is :mod:`.batch` with :mod:`.generate_all`; DeepDream (:mod:`.dream`) and method comparison
(:mod:`.compare`) are built on the same pieces."""
