"""Search: find the papers that answer a question (dense and keyword rankings, fused per paper)."""
