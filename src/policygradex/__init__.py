"""policygradex: PolicyGradEx (arXiv 2511.12779) — estimate, without training, how fine-tuning a
meta-policy on any subset of RL tasks would perform; group tasks by the estimated affinity; train one
policy per group."""

__version__ = "0.1.0"
