"""Feature networks (VGG backbones) for the texture losses; see ``models.backbones``."""
