"""``python -m portrait3d``."""

from portrait3d.cli import entry_point

if __name__ == "__main__":
    entry_point()
