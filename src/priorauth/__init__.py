"""priorauth: a payer-side prior authorization engine that evaluates clinical coverage policies as data."""

__version__ = "0.1.0"
