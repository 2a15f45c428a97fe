"""Converters from released checkpoints of the official codes to this package's models."""
