"""Checks of the method: first-order approximation error, agreement with full training."""
