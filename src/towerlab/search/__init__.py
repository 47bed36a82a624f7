"""Hyperparameter search: a search space over recipe config fields, the genetic algorithm, and grid search."""
