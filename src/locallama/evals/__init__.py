"""Measuring models; consumers of the Runtime, never of llama.cpp.

``locallama eval`` (the leaderboard benchmarks as lm-evaluation-harness runs them):
benchmarks (the six tasks: prompts, per-item metrics), fewshot (the harness's few-shot
draw), metrics (formulas, standard errors), data (local Parquet / JSON Lines, the hub, the bundled
samples), harness (requests through the Runtime), results (the table and the JSON).
perplexity, speed (bench), report and facts serve the other measuring commands.
"""
