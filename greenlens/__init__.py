"""greenlens: two transfer-learning image classifiers (strawberry leaf health, aerial cactus)."""
