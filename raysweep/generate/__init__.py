"""Generation backends behind one protocol, chosen by name: `transformers` | `vllm` (lazy imports)."""
