"""Networks as plain ``nn.Module``s; Lightning tasks in ``nowcast_pl.tasks`` receive them."""

from nowcast_pl.models.simvp import SimVP

__all__ = ["SimVP"]
