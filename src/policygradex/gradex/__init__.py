"""The PolicyGradEx estimator (paper §2.2–2.6): projection, surrogate fits, subsets and affinity."""
