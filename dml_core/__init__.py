"""DML Explorer's library: datasets, models, losses, miners, samplers, metrics and the trainer."""

__version__ = "0.1.0"
