"""The staged predictor (after AIR, arXiv 2605.20820): network and Stage Control (`network`),
the stage rollout shared with training (`rollout`), the encoder's initializer
(`initializer`) and the shipped weights (`model`, ``weights/``). Needs torch."""
