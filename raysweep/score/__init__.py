"""Scorers behind one protocol, chosen by name (lazy imports)."""
