"""visor's version, in a module of its own: any layer can name it without importing the top-level package."""

__version__ = "0.1.0"
