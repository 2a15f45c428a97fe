"""STLDM: VAE, latent translator and U-Net network, its task, and the official-weight converter."""

from nowcast_pl.models.stldm.network import STLDM
from nowcast_pl.models.stldm.task import STLDMTask
from nowcast_pl.models.stldm.unet import STLDMUNet

__all__ = ["STLDM", "STLDMTask", "STLDMUNet"]
