"""The encoder: plan (quality -> budget), initializers (where splats start), optimisation
(colour solves, refinement), and the pipeline image -> splats -> bytes. Needs torch."""
