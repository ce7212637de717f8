"""The engine: llama.cpp models and contexts, sampling, templates, stop sequences."""
