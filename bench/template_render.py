"""Cost of rendering chat templates out of process: the worker round trip of
``engine/render.py`` against jinja2 rendering the same template in this process.

Three templates of the usual kinds (ChatML, a Llama-3 style header template, and a
long system prompt with a ten-turn conversation), each rendered ``--renders`` times
both ways, the two ways alternating so that machine noise hits both alike.  Prints
median microseconds per render and the ratio worker / in-process, plus the one-time
start of a worker.

    .venv/bin/python bench/template_render.py [--renders 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time

from jinja2.sandbox import ImmutableSandboxedEnvironment

from locallama.engine.render import Renderer

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
HEADERS = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
           "<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
           "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
           "{% endif %}")
SHORT = [{"role": "user", "content": "Why is the sky blue?"}]
LONG = [{"role": "system", "content": "You are a careful assistant. " * 200}] + [
    {"role": "user" if i % 2 == 0 else "assistant", "content": f"Turn {i}: " + "words " * 60}
    for i in range(10)]
CASES = [("chatml, one turn", CHATML, SHORT), ("headers, one turn", HEADERS, SHORT),
         ("chatml, 10 turns + long system", CHATML, LONG)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=2000)
    args = parser.parse_args()
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    renderer = Renderer(timeout=5.0)
    try:
        started = time.perf_counter()
        renderer.render(CHATML, [{"messages": SHORT, "add_generation_prompt": True}])
        first_ms = (time.perf_counter() - started) * 1e3
        print(f"first render (starts a worker): {first_ms:.1f} ms\n")
        print(f"{'template':34} {'in-process µs':>14} {'worker µs':>10} {'ratio':>7}")
        for label, source, messages in CASES:
            context = {"messages": messages, "add_generation_prompt": True, "bos_token": "<s>"}
            template = env.from_string(source)
            local: list[float] = []
            remote: list[float] = []
            for _ in range(args.renders):
                t0 = time.perf_counter()
                expected = template.render(**context)
                t1 = time.perf_counter()
                got = renderer.render(source, [context])
                t2 = time.perf_counter()
                local.append(t1 - t0)
                remote.append(t2 - t1)
            assert got == expected, "the worker's prompt differs from jinja2's"
            a, b = statistics.median(local) * 1e6, statistics.median(remote) * 1e6
            print(f"{label:34} {a:14.1f} {b:10.1f} {b / a:7.1f}")
    finally:
        renderer.close()


if __name__ == "__main__":
    main()
