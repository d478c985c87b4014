"""greenlens: two transfer-learning image classifiers (strawberry leaf health, aerial cactus) and
surveys of aerial orthomosaics."""

__version__ = "2.0.0"
