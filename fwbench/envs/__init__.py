"""Environments for reinforcement-learning tasks: each as a gymnasium.Env and a batched twin."""
