"""Structured output through both faces with the official clients: keys in the
schema's declared order, and "json" output that stops at its closing brace (issue
15: keys came back sorted). That "json" ends at its closing brace is tested on the
grammar itself (tests/engine/test_schema_grammar.py): the random tiny model rarely
closes a JSON string, so a face test could not tell."""

from __future__ import annotations

import json

import ollama
import openai

SCHEMA = {"type": "object", "properties": {"z": {"type": "boolean"}, "a": {"type": "boolean"},
                                           "m": {"type": "boolean"}},
          "required": ["z", "a", "m"], "additionalProperties": False}


def test_ollama_chat_keeps_the_declared_order(server):
    client = ollama.Client(host=server.url)
    r = client.chat(model="tiny", messages=[{"role": "user", "content": "flags"}],
                    format=SCHEMA, options={"temperature": 0, "num_predict": 200})
    assert list(json.loads(r.message.content)) == ["z", "a", "m"]


def test_openai_json_schema_keeps_the_declared_order(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x")
    r = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "flags"}], temperature=0,
        max_tokens=200, response_format={"type": "json_schema", "json_schema": {
            "name": "flags", "schema": SCHEMA, "strict": True}})
    assert list(json.loads(r.choices[0].message.content)) == ["z", "a", "m"]
