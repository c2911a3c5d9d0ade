"""fwbench: a benchmark suite for recurrent memory architectures and fast weights."""

__version__ = "0.1.0"
