"""Chat templates render in worker processes that a time limit, an output limit, a
departing client or a shutdown really stop, and nothing grows this process."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from locallama.cancel import CLIENT_GONE
from locallama.engine.render import Renderer
from locallama.engine.templates import ChatTemplate, sandbox, select_template
from locallama.errors import Cancelled, TemplateError, TemplateLimitExceeded

MIB = 1024 * 1024
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
LOOP = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
#: Ways to ask for a 300-million-character string.
BIG = [
    "{{ 'a' * 300000000 }}",
    "{% set s = 'a' * 300000000 %}{{ s|length }}",
    "{{ 'x'|center(300000000) }}",
    "{{ '%0300000000d' % 1 }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(28) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "{% for i in range(100000) %}{{ 'y' * 3000 }}{% endfor %}",
]


@pytest.fixture
def renderer() -> Iterator[Renderer]:
    r = Renderer(timeout=1.0, max_bytes=1 * MIB, workers=2)
    yield r
    r.close()


def rss() -> int:
    return psutil.Process().memory_info().rss


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_looping_template_stops_at_its_time_limit_and_its_worker_is_replaced(renderer):
    template = ChatTemplate("{{ messages[0].content }}")
    assert template.render(MESSAGES, renderer=renderer).prompt == "Be brief."
    [pid] = renderer.pids()
    started = time.monotonic()
    with pytest.raises(TemplateLimitExceeded) as caught:
        ChatTemplate(LOOP).render(MESSAGES, renderer=renderer, model="loop:latest")
    assert time.monotonic() - started < 5  # the limit is 1 s
    assert str(caught.value) == ("model 'loop:latest': chat template ran past its 1 s time "
                                 "limit (LOCALLAMA_TEMPLATE_TIMEOUT)")
    assert gone(pid) or pid not in renderer.pids()
    assert renderer.busy() == 0 and len(renderer.pids()) <= 1
    # The next render gets a fresh worker.
    assert template.render(MESSAGES, renderer=renderer).prompt == "Be brief."


@pytest.mark.parametrize("source", BIG)
def test_a_huge_string_is_refused_without_growing_this_process(renderer, source):
    before = rss()
    started = time.monotonic()
    with pytest.raises(TemplateLimitExceeded) as caught:
        ChatTemplate(source).render(MESSAGES, renderer=renderer, model="big:latest")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert message.startswith("model 'big:latest': chat template ")
    assert "LOCALLAMA_TEMPLATE_MAX_BYTES" in message or "LOCALLAMA_TEMPLATE_TIMEOUT" in message
    assert rss() - before < 64 * MIB  # 300 million characters would be 300 MB or more


def test_compiling_a_template_does_not_run_it():
    """jinja2 folds constant expressions while compiling; here nothing is folded."""
    before = rss()
    for source in BIG[:4]:
        select_template(source, None)
    assert rss() - before < 64 * MIB


def test_a_worker_has_its_memory_capped(renderer):
    ChatTemplate("x").render(MESSAGES, renderer=renderer)
    [pid] = renderer.pids()
    limits = Path(f"/proc/{pid}/limits").read_text()
    [line] = [line for line in limits.splitlines() if line.startswith("Max address space")]
    cap = int(line.split()[3])
    assert cap < 1024 * MIB  # its start-up size + 256 MiB + 4 x 1 MiB


def test_the_output_limit_counts_bytes(renderer):
    assert len(ChatTemplate("{{ 'é' * 400000 }}").render([], renderer=renderer).prompt) \
        == 400000
    with pytest.raises(TemplateLimitExceeded, match="wrote past its 1 MiB output limit"):
        ChatTemplate("{{ 'é' * 600000 }}").render([], renderer=renderer)  # 1.2 MB of UTF-8


def test_a_departing_client_stops_the_render_at_once():
    event = threading.Event()
    failures: list[BaseException] = []
    slow = Renderer(timeout=60, max_bytes=MIB)

    def render() -> None:
        CLIENT_GONE.set(event)  # as the server sets it for a request
        try:
            ChatTemplate(LOOP).render(MESSAGES, renderer=slow)
        except BaseException as exc:
            failures.append(exc)

    try:
        thread = threading.Thread(target=render)
        thread.start()
        deadline = time.monotonic() + 10
        while slow.busy() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        [pid] = slow.pids()
        time.sleep(0.2)
        event.set()
        thread.join(timeout=5)
        assert not thread.is_alive(), "the render went on after its client left"
        assert len(failures) == 1 and isinstance(failures[0], Cancelled)
        assert gone(pid) and slow.busy() == 0 and slow.pids() == []
        assert ChatTemplate("ok").render([], renderer=slow).prompt == "ok"
    finally:
        slow.close()


def test_closing_the_renderer_stops_renders_in_flight_and_leaves_no_process():
    r = Renderer(timeout=60, max_bytes=MIB, workers=2)
    failures: list[BaseException] = []

    def render() -> None:
        try:
            ChatTemplate(LOOP).render([], renderer=r)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=render) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while r.busy() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    pids = r.pids()
    assert len(pids) == 2
    r.close()
    for t in threads:
        t.join(timeout=5)
        assert not t.is_alive()
    assert [type(f) for f in failures] == [Cancelled, Cancelled]
    assert all(gone(pid) for pid in pids) and r.pids() == []


def test_workers_are_reused_and_renders_queue_for_a_free_one(renderer):
    template = ChatTemplate("{{ messages|length }}")
    for _ in range(20):
        assert template.render(MESSAGES, renderer=renderer).prompt == "2"
    assert len(renderer.pids()) == 1
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(
        template.render(MESSAGES, renderer=renderer).prompt)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == ["2"] * 6 and len(renderer.pids()) <= 2


def test_a_render_round_trip_is_cheap(renderer):
    """The figure in the README (tens of microseconds here); the bound is generous."""
    template = ChatTemplate("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}"
                            "{% endfor %}<|assistant|>")
    template.render(MESSAGES, renderer=renderer)  # starts the worker
    started = time.perf_counter()
    for _ in range(100):
        template.render(MESSAGES, renderer=renderer)
    assert (time.perf_counter() - started) / 100 < 0.02


@pytest.mark.parametrize("source", [
    "{% for m in messages %}{{ m.role|upper }}: {{ m.content|trim }}\n{% endfor %}",
    "{{ messages|tojson }}{{ messages|map(attribute='role')|join(',') }}",
    "{{ bos_token }}{% if add_generation_prompt %}{{ '%s!' % 'go' }}{{ 'ab' * 2 }}"
    "{{ 2 ** 8 }}{{ 7 % 3 }}{% endif %}{{ messages|sort(attribute='role')|first }}",
    "{{ 'x'|center(9) }}|{{ '%05d'|format(42) }}|{{ [3, 1, 2]|sort|list }}|{{ 'a b'|title }}",
])
def test_renders_match_jinja2_in_process(renderer, source):
    context = {"messages": MESSAGES, "add_generation_prompt": True, "bos_token": "<s>",
               "eos_token": "</s>"}
    expected = sandbox().from_string(source).render(**context)
    assert ChatTemplate(source, "<s>", "</s>").render(MESSAGES, renderer=renderer).prompt \
        == expected


def test_template_errors_come_back_as_template_errors(renderer):
    with pytest.raises(TemplateError, match="chat template error: no system role"):
        ChatTemplate("{{ raise_exception('no system role') }}").render([], renderer=renderer)
    with pytest.raises(TemplateError, match="unsafe"):
        ChatTemplate("{{ ''.__class__.__mro__ }}").render([], renderer=renderer)
    assert not isinstance(TemplateError("x"), TemplateLimitExceeded)
    assert ChatTemplate("ok").render([], renderer=renderer).prompt == "ok"  # same worker


def test_go_templates_render_under_the_limits_too(renderer):
    template = select_template("{{ if .System }}{{ .System }} {{ end }}[{{ .Prompt }}]", None)
    assert template.render(MESSAGES, renderer=renderer).prompt == "Be brief. [Hi]"


def test_no_worker_outlives_its_parent(tmp_path):
    """A renderer's process ends with the process that started it, killed or not."""
    import subprocess
    import sys

    script = ("from locallama.engine.templates import ChatTemplate\n"
              "from locallama.engine.render import default_renderer\n"
              "ChatTemplate('x').render([])\n"
              "print(*default_renderer().pids(), flush=True)\n"
              "import sys; sys.stdin.read()\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    for how in ("exit", "kill"):
        proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env)
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert pids
        if how == "exit":
            proc.stdin.close()
        else:
            proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while not all(gone(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(gone(p) for p in pids), how


# -- compiling and translating: bounded too, and never in this process -----------------

#: What once froze a server: every unclosed ``{{`` rescanned the rest of the text.
UNCLOSED = "{{ .Prompt }}" + "{{" * 30000
#: 4.4 MB of blocks: seconds and gigabytes to compile.
HUGE = "{% if a %}x{% endif %}" * 200000
NESTED = ["{{" + "(" * 2000 + "1" + ")" * 2000 + "}}", "{% if a %}" * 3000 + "{% endif %}" * 3000]


@pytest.mark.parametrize("tail", ["{{" * 30000, "{{" * 300000 + "}}", "{{" + " " * 600000,
                                  "{{ if" * 100000, "{{- " * 100000 + ".Prompt }}"])
def test_go_templates_are_translated_in_linear_time(tail):
    started = time.monotonic()
    with pytest.raises(TemplateError, match="unclosed action"):
        select_template("{{ .Prompt }}" + tail, None)
    assert time.monotonic() - started < 1


def test_an_unclosed_go_action_is_a_template_error():
    with pytest.raises(TemplateError, match="unclosed action at character 13"):
        select_template(UNCLOSED, None)
    with pytest.raises(TemplateError, match="unclosed action at character 0"):
        select_template("{{ .System {{ .Prompt }}", None)


def test_compiling_runs_in_a_worker_under_the_time_limit(renderer):
    before = rss()
    started = time.monotonic()
    template = select_template(HUGE, None)
    with pytest.raises(TemplateLimitExceeded) as caught:
        template.check(renderer=renderer, model="huge:latest")
    assert time.monotonic() - started < 5  # the limit is 1 s
    assert str(caught.value) == ("model 'huge:latest': chat template ran past its 1 s time "
                                 "limit (LOCALLAMA_TEMPLATE_TIMEOUT)")
    with pytest.raises(TemplateLimitExceeded):  # rendering compiles under the limit too
        template.render(MESSAGES, renderer=renderer, model="huge:latest")
    assert rss() - before < 64 * MIB  # compiling it here took gigabytes
    assert ChatTemplate("ok").render([], renderer=renderer).prompt == "ok"


def test_this_process_never_compiles_a_template(renderer, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a template was compiled in the server process")

    monkeypatch.setattr("jinja2.Environment.compile", refuse)
    for source in ("{{ messages[0].content }}", "{% for %}", "[{{ .Prompt }}]"):
        select_template(source, None)
    with pytest.raises(TemplateError, match="does not compile"):
        select_template("{% for %}", None).check(renderer=renderer)
    select_template("[{{ .Prompt }}]", None).check(renderer=renderer)
    assert select_template("[{{ .Prompt }}]", None).render(
        MESSAGES, renderer=renderer).prompt == "[Hi]"


@pytest.mark.parametrize("source", NESTED)
def test_a_deeply_nested_template_is_a_template_error(renderer, source):
    template = select_template(source, None)
    for attempt in (lambda: template.check(renderer=renderer, model="deep:latest"),
                    lambda: template.render(MESSAGES, renderer=renderer, model="deep:latest")):
        with pytest.raises(TemplateError, match="nested too deeply") as caught:
            attempt()
        assert not isinstance(caught.value, TemplateLimitExceeded)
    assert ChatTemplate("ok").render([], renderer=renderer).prompt == "ok"


def test_a_template_that_recurses_forever_is_a_template_error(renderer):
    template = ChatTemplate("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}")
    with pytest.raises(TemplateError, match="recursed or nested too deeply"):
        template.render(MESSAGES, renderer=renderer)


def test_a_cheap_template_is_compiled_once_per_worker(renderer):
    template = ChatTemplate("{% for m in messages %}{{ m.content }}{% endfor %}")
    template.check(renderer=renderer)
    started = time.perf_counter()
    for _ in range(50):
        template.check(renderer=renderer)
        assert template.render(MESSAGES, renderer=renderer).prompt == "Be brief.Hi"
    assert (time.perf_counter() - started) / 100 < 0.02
