"""Evaluation: benchmark metrics (VQA, ANLS, ChartQA, choices, POPE, MME, EntityGrid-QA), benchmark readers,
greedy generation and the sharded, resumable evaluation harness."""
