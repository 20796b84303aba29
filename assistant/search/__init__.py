"""Search: which papers answer a question. `dense` and `keyword` each rank chunks; `fusion` fuses
their rankings by weighted reciprocal rank and groups chunks by paper."""
