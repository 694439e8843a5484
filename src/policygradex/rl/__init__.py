"""Reinforcement learning: policies with a functional log-probability, rollouts, GAE, multitask PPO,
evaluation and checkpoints."""
