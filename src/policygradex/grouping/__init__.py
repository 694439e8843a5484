"""Partitions of tasks from an affinity matrix (paper §2.7) and grouping baselines."""
