"""UniCRS (Wang et al., KDD 2022) on the local stack: a MovieLens knowledge graph, R-GCN entity
encoder, knowledge-enhanced prompts injected as per-layer KV prefixes into a frozen causal LM."""
