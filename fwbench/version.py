"""fwbench's version, in a module of its own so that any module can read it without importing
the package's top level (which would make an import cycle through `fwbench.load_runs`)."""

__version__ = "0.1.0"
