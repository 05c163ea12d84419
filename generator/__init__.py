"""The generator engine: a network trained per texture (train.py), then rendered at any size."""
