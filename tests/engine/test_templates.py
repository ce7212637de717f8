import pytest

from locallama.engine.templates import (
    ChatTemplate,
    FallbackTemplate,
    GoPromptTemplate,
    select_template,
)
from locallama.errors import TemplateError

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_jinja_template_renders_messages():
    out = ChatTemplate(CHATML).render(MESSAGES).prompt
    assert out == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                   "<|im_start|>assistant\n")


def test_bos_and_eos_tokens_are_available():
    out = ChatTemplate("{{ bos_token }}{{ messages[0].content }}{{ eos_token }}", "<s>", "</s>")
    assert out.render(MESSAGES).prompt == "<s>Be brief.</s>"


@pytest.mark.parametrize(
    "payload",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ messages.__class__.__init__.__globals__ }}",
        "{% set x = messages.append(1) %}",
        "{{ raise_exception('nope') }}",
    ],
)
def test_template_injection_fails_cleanly(payload):
    with pytest.raises(TemplateError):
        ChatTemplate(payload).render(MESSAGES)


def test_syntax_error_is_a_template_error():
    template = ChatTemplate("{% for %}")  # compiled in a worker, not here
    with pytest.raises(TemplateError, match="does not compile"):
        template.check()
    with pytest.raises(TemplateError, match="does not compile"):
        template.render(MESSAGES)


def test_go_prompt_template_is_translated():
    source = "{{ if .System }}<<SYS>>{{ .System }}<</SYS>>{{ end }}[INST] {{ .Prompt }} [/INST]"
    template = select_template(source, None)
    assert isinstance(template, GoPromptTemplate)
    out = template.render(MESSAGES + [{"role": "assistant", "content": "Hello"},
                                      {"role": "user", "content": "Again"}]).prompt
    assert out == "<<SYS>>Be brief.<</SYS>>[INST] Hi [/INST][INST] Again [/INST]"


def test_go_template_with_messages_loop_falls_back_to_the_gguf_template():
    go = "{{ range .Messages }}{{ .Content }}{{ end }}"
    assert isinstance(select_template(go, CHATML), ChatTemplate)


def test_fallback_format_for_models_without_a_template():
    template = select_template(None, None)
    assert isinstance(template, FallbackTemplate)
    rendered = template.render(MESSAGES + [{"role": "assistant", "content": "Hello"},
                                           {"role": "user", "content": "Again"}])
    assert rendered.prompt == "Be brief.\n\nUser: Hi\nAssistant: Hello\nUser: Again\nAssistant:"
    assert "\nUser:" in rendered.stops


def test_modelfile_template_wins_over_gguf():
    template = select_template("{{ messages[-1].content }}!", CHATML)
    assert template.render(MESSAGES).prompt == "Hi!"


@pytest.mark.parametrize("source", ["{{ if }}x{{ end }}", "{{ .Prompt }}{{ end }}",
                                    "{{ if .System }}x", "{{ .Prompt | printf }}"])
def test_broken_go_templates_are_refused(source):
    with pytest.raises(TemplateError):
        select_template(source, None)
