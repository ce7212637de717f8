"""Everyday work on top of the Runtime: recipes, context budgeting, inputs, running a recipe.

Nothing here imports llama.cpp: every task talks to a Runtime, so it works the same
in-process and against a running server (DESIGN.md rule 2).
"""
