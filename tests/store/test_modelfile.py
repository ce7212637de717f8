"""Modelfile parsing and rendering, as a user writing or reading one sees it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from locallama.errors import ModelfileError
from locallama.store.modelfile import Modelfile, parse_modelfile, read_modelfile

Q3 = '"""'

CHATML = """{{ if .System }}<|im_start|>system
{{ .System }}<|im_end|>

{{ end }}{{ range .Messages }}<|im_start|>{{ .Role }}

{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""


def test_every_instruction() -> None:
    text = f"""\
FROM llama3.2:1b
ADAPTER ./lora.gguf
TEMPLATE {Q3}{CHATML}{Q3}
SYSTEM You are Mario from super mario bros.
PARAMETER temperature 0.7
PARAMETER num_ctx 4096
MESSAGE user Is Toronto in Canada?
MESSAGE assistant yes
LICENSE {Q3}MIT License

Copyright (c) someone{Q3}
"""
    assert parse_modelfile(text) == Modelfile(
        from_="llama3.2:1b",
        adapter="./lora.gguf",
        template=CHATML,
        system="You are Mario from super mario bros.",
        parameters=[("temperature", "0.7"), ("num_ctx", "4096")],
        messages=[("user", "Is Toronto in Canada?"), ("assistant", "yes")],
        licenses=["MIT License\n\nCopyright (c) someone"],
    )


def test_instructions_names_and_roles_are_case_insensitive() -> None:
    text = "from llama3.2\nParameter Temperature 1\nmessage USER Hi\nsYsTeM be brief\n"
    mf = parse_modelfile(text)
    assert mf.from_ == "llama3.2"
    assert mf.parameters == [("temperature", "1")]
    assert mf.messages == [("user", "Hi")]
    assert mf.system == "be brief"


def test_comments_and_blank_lines_are_ignored_but_kept_inside_triple_quotes() -> None:
    text = f"""
# a comment
   # an indented comment

FROM llama3.2
\t
SYSTEM {Q3}
# not a comment: part of the system prompt

{Q3}
# PARAMETER temperature 0
"""
    mf = parse_modelfile(text)
    assert mf.system == "\n# not a comment: part of the system prompt\n\n"
    assert mf.parameters == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("SYSTEM   You are a pirate.   ", "You are a pirate."),
        ('SYSTEM You say "arr"', 'You say "arr"'),
        ('SYSTEM "  padded  "', "  padded  "),
        ('SYSTEM "He said \\"hi\\""', 'He said "hi"'),
        ('SYSTEM "quotes "inside" need no escapes"', 'quotes "inside" need no escapes'),
        ('SYSTEM "C:\\models\\"', "C:\\models\\"),
        ('SYSTEM ""', ""),
        (f"SYSTEM {Q3}one line{Q3}", "one line"),
        (f"SYSTEM {Q3}  kept verbatim  {Q3}   ", "  kept verbatim  "),
        (f'SYSTEM {Q3}ends in a quote"{Q3}', 'ends in a quote"'),
        (f"SYSTEM {Q3}{Q3}", ""),
    ],
)
def test_argument_forms(line: str, expected: str) -> None:
    assert parse_modelfile(f"FROM m\n{line}\n").system == expected


def test_multiline_template_with_blank_lines_is_verbatim() -> None:
    text = f"FROM m\nTEMPLATE {Q3}\n\n  {{{{ .Prompt }}}}  \n\n\n{Q3}\nPARAMETER top_k 1\n"
    mf = parse_modelfile(text)
    assert mf.template == "\n\n  {{ .Prompt }}  \n\n\n"
    assert mf.parameters == [("top_k", "1")]


def test_parameter_and_message_values_can_be_quoted() -> None:
    text = f'FROM m\nPARAMETER stop "<|im_end|>"\nMESSAGE user {Q3}two\nlines{Q3}\n'
    mf = parse_modelfile(text)
    assert mf.parameters == [("stop", "<|im_end|>")]
    assert mf.messages == [("user", "two\nlines")]


def test_repeated_parameters_are_all_kept_in_order() -> None:
    text = 'FROM m\nPARAMETER stop "<|im_end|>"\nPARAMETER temperature 0\nPARAMETER stop User:\n'
    assert parse_modelfile(text).parameters == [
        ("stop", "<|im_end|>"),
        ("temperature", "0"),
        ("stop", "User:"),
    ]


def test_last_template_and_system_win_and_licenses_add_up() -> None:
    text = "FROM m\nTEMPLATE first\nSYSTEM one\nTEMPLATE second\nSYSTEM two\nLICENSE a\nLICENSE b\n"
    mf = parse_modelfile(text)
    assert (mf.template, mf.system, mf.licenses) == ("second", "two", ["a", "b"])


def test_message_roles() -> None:
    roles = ["system", "user", "assistant", "tool"]
    text = "FROM m\n" + "".join(f"MESSAGE {role} hi\n" for role in roles)
    assert [role for role, _ in parse_modelfile(text).messages] == roles


def test_windows_line_endings_and_bom_parse_like_unix() -> None:
    unix = f"FROM m\nTEMPLATE {Q3}a\n\nb{Q3}\nPARAMETER stop x\n"
    assert parse_modelfile("\ufeff" + unix.replace("\n", "\r\n")) == parse_modelfile(unix)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("FROM m\n\nFORM m\n", 3, "unknown instruction 'FORM'"),
        ("FROM m\n{{ .Prompt }}\n", 2, "unknown instruction '{{'"),
        ("# only a comment\nSYSTEM hi\n", None, "no FROM line"),
        ("FROM a\nADAPTER x\nADAPTER y\n", 3, "second ADAPTER"),
        (f"FROM m\n\nTEMPLATE {Q3}hello\n\nworld\n", 3, 'unterminated """'),
        (f"FROM m\nSYSTEM {Q3}\n", 2, 'unterminated """'),
        (f"FROM m\nSYSTEM {Q3}a{Q3} trailing\nPARAMETER x 1\n", 2, 'unterminated """'),
        ('FROM m\nSYSTEM "hello\nworld"\n', 2, "unterminated quote"),
        ("FROM m\nPARAMETER temperature\n", 2, "PARAMETER temperature needs a value"),
        ("FROM m\nPARAMETER   \n", 2, "PARAMETER needs a name and a value"),
        ("FROM m\nMESSAGE bot hello\n", 2, "MESSAGE role 'bot' is not one of"),
        ("FROM m\nMESSAGE user\n", 2, "MESSAGE user needs a value"),
        ("FROM\n", 1, "FROM needs a value"),
        ('FROM ""\n', 1, "FROM needs a value"),
        ("FROM m\nTEMPLATE\n", 2, "TEMPLATE needs a value"),
        ("", None, "Modelfile is empty"),
        ("\n  \n# nothing here\n", None, "Modelfile is empty"),
    ],
)
def test_errors_name_the_line(text: str, line: int | None, fragment: str) -> None:
    with pytest.raises(ModelfileError) as info:
        parse_modelfile(text)
    err = info.value
    assert err.line == line
    assert fragment in str(err)
    assert "\n" not in str(err)
    if line is not None:
        assert str(err).startswith(f"Modelfile line {line}: ")


def test_unknown_instruction_message_is_exact_prefix() -> None:
    with pytest.raises(ModelfileError, match=r"^Modelfile line 3: unknown instruction 'FORM' "):
        parse_modelfile("# hi\nFROM m\nFORM m\n")


def test_render_looks_like_ollama_show() -> None:
    mf = Modelfile(
        from_="/models/blobs/sha256-00e1",
        template="{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}",
        system="You are a helpful assistant.",
        parameters=[("stop", "<|im_end|>"), ("num_ctx", "4096")],
        messages=[("user", "Is Toronto in Canada?"), ("assistant", "yes")],
        licenses=["Apache License 2.0"],
    )
    assert mf.render() == (
        "FROM /models/blobs/sha256-00e1\n"
        'TEMPLATE """{{ if .System }}<|im_start|>system\n'
        '{{ .System }}<|im_end|>\n{{ end }}"""\n'
        "SYSTEM You are a helpful assistant.\n"
        'PARAMETER stop "<|im_end|>"\n'
        "PARAMETER num_ctx 4096\n"
        "MESSAGE user Is Toronto in Canada?\n"
        "MESSAGE assistant yes\n"
        'LICENSE """Apache License 2.0"""\n'
    )


@pytest.mark.parametrize(
    "mf",
    [
        Modelfile(from_="llama3.2"),
        Modelfile(from_="./my models/tiny model.gguf", adapter="C:\\loras\\x.gguf"),
        Modelfile(
            from_="qwen2.5:0.5b",
            template=CHATML,
            system='Say "hi" and nothing else',
            parameters=[("stop", "<|im_end|>"), ("stop", " "), ("temperature", "0.2")],
            messages=[("system", ""), ("user", "  spaced  "), ("assistant", '"quoted"')],
            licenses=["line one\n\nline three\n", 'ends with a quote"', ""],
        ),
        Modelfile(
            from_='"odd"',
            template='{"content": {{ .Content }}}',
            system="",
            parameters=[("seed", "\\"), ("stop", '"""'), ("stop", "a\\"), ("stop", "\t")],
            messages=[("tool", 'multi\nline with """ inside\nand "quotes"')],
        ),
    ],
)
def test_render_then_parse_round_trips(mf: Modelfile) -> None:
    assert parse_modelfile(mf.render()) == mf


def _representable(value: str) -> bool:
    """The one documented limit: a non-last line ending in three quotes (plus spaces)."""
    return not any(line.rstrip().endswith(Q3) for line in value.split("\n")[:-1])


def test_round_trip_on_random_values() -> None:
    rng = random.Random(1234)
    alphabet = ['"', '"', "\\", " ", " ", "\t", "\n", "#", "a", "b", "{", "}", "é"]

    def value() -> str:
        while True:
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
            if _representable(text):
                return text

    for _ in range(300):
        mf = Modelfile(
            from_=value().strip() or "m",
            template=value(),
            system=value(),
            parameters=[(rng.choice(["stop", "num_ctx"]), value()) for _ in range(2)],
            messages=[("user", value()), ("assistant", value())],
            licenses=[value()],
        )
        assert parse_modelfile(mf.render()) == mf, mf.render()


def test_read_modelfile(tmp_path: Path) -> None:
    path = tmp_path / "Modelfile"
    path.write_text('FROM ./tiny.gguf\nPARAMETER stop "</s>"\n', encoding="utf-8")
    assert read_modelfile(path) == Modelfile(from_="./tiny.gguf", parameters=[("stop", "</s>")])


def test_read_modelfile_accepts_utf16_from_powershell(tmp_path: Path) -> None:
    path = tmp_path / "Modelfile"
    path.write_bytes("FROM llama3.2\r\nSYSTEM héllo\r\n".encode("utf-16"))
    assert read_modelfile(path) == Modelfile(from_="llama3.2", system="héllo")


def test_read_missing_modelfile(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "Modelfile"
    with pytest.raises(ModelfileError, match="cannot read Modelfile .*: no such file") as info:
        read_modelfile(path)
    assert str(path) in str(info.value)


def test_read_directory_as_modelfile(tmp_path: Path) -> None:
    with pytest.raises(ModelfileError, match="cannot read Modelfile .*directory"):
        read_modelfile(tmp_path)


def test_read_non_utf8_modelfile_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "Modelfile"
    path.write_bytes(b"FROM m\nSYSTEM caf\xe9\n")
    with pytest.raises(ModelfileError, match="is not UTF-8 text") as info:
        read_modelfile(path)
    assert info.value.line == 2
    assert str(info.value).startswith("Modelfile line 2: ")


def test_a_second_from_is_a_projector_and_round_trips() -> None:
    parsed = parse_modelfile("FROM ./model.gguf\nSYSTEM hi\nFROM ./mmproj.gguf\n")
    assert parsed.from_ == "./model.gguf"
    assert parsed.projectors == ["./mmproj.gguf"]
    assert parse_modelfile(parsed.render()) == parsed
