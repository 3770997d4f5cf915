"""raysweep: Ray-distributed sweep and evaluation engine for weight-space alignment of LLMs."""

__version__ = "0.1.0"
