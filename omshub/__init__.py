"""omshub: turns row changes in the OMS database into reliable pushes to the systems around it."""

__version__ = "0.1.0"
