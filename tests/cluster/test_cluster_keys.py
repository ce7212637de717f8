"""Routing keys and the affinity table (no Ray needed)."""

from __future__ import annotations

from locallama.cluster.keys import AffinityTable, route_key
from locallama.runtime.types import ChatRequest, GenerateRequest, Message


def conversation(first: str, *later: str) -> ChatRequest:
    messages = [Message("system", "be brief"), Message("user", first)]
    for i, text in enumerate(later):
        messages += [Message("assistant", f"answer {i}"), Message("user", text)]
    return ChatRequest("tiny", messages)


def test_every_turn_of_a_conversation_has_its_first_turns_key():
    assert route_key(conversation("a")) == route_key(conversation("a", "b", "c"))
    assert route_key(conversation("a")) != route_key(conversation("b"))
    other_model = conversation("a")
    other_model.model = "gemma3:270m"
    assert route_key(other_model) != route_key(conversation("a"))


def test_a_generate_key_is_its_prompts_start():
    long = "x" * 5000
    assert route_key(GenerateRequest("tiny", prompt=long + "1")) == \
        route_key(GenerateRequest("tiny", prompt=long + "2"))
    assert route_key(GenerateRequest("tiny", prompt="ab")) != \
        route_key(GenerateRequest("tiny", prompt="ac"))
    assert route_key(GenerateRequest("tiny", context=[1, 2, 3], prompt="x")) == \
        route_key(GenerateRequest("tiny", context=[1, 2, 3], prompt="y"))


def test_the_table_forgets_the_least_recently_used_and_a_dead_replica():
    table = AffinityTable(max_keys=2)
    table.put("a", "r1")
    table.put("b", "r2")
    assert table.get("a") == "r1"  # now b is the oldest
    table.put("c", "r1")
    assert table.get("b") is None and len(table) == 2
    table.forget("r1")
    assert table.get("a") is None and table.get("c") is None
