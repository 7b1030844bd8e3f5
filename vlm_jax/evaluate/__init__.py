"""Evaluation: benchmark metrics (VQA, ANLS, ChartQA, choices, POPE, MME, EntityGrid-QA), benchmark readers and
teacher-forced EntityGrid-QA scoring."""
