"""The visualization core (lucid's ``optvis``): objectives (:mod:`.objectives`), image parameterizations
(:mod:`.param`), transforms (:mod:`.transforms`), the optimization loop (:mod:`.optimize`) with its
callbacks (:mod:`.callbacks`), the engine (:mod:`.engine`: B objectives per step, any parameterization)
and :func:`dgn.render` (:mod:`.render`), which runs it. The paper's generator network is :mod:`.generator`
(its layers :mod:`.layers`); ``generate-all`` is :mod:`.generate_all` with its units :mod:`.batch`;
DeepDream (:mod:`.dream`) and method comparison (:mod:`.compare`) run the same engine."""
