import math

import pytest

from locallama.errors import InvalidRequest
from locallama.options import (
    OPTION_NAMES,
    Options,
    coerce_option,
    parse_keep_alive,
    parse_parameters,
    resolve_options,
)


def test_defaults_are_ollamas():
    o = resolve_options()
    assert (o.temperature, o.top_k, o.top_p, o.repeat_penalty, o.repeat_last_n) == (
        0.8, 40, 0.9, 1.1, 64)
    assert (o.num_predict, o.seed, o.mirostat, o.num_batch) == (-1, -1, 0, 512)


def test_precedence_request_over_modelfile_over_defaults():
    model = parse_parameters([("temperature", "0.2"), ("top_k", "7"), ("stop", "A"),
                              ("stop", "B")])
    assert model["stop"] == ["A", "B"]
    o = resolve_options(model, {"temperature": 0.9})
    assert o.temperature == 0.9  # request wins
    assert o.top_k == 7  # Modelfile over the default
    assert o.stop == ("A", "B")
    assert o.top_p == Options().top_p  # default


def test_request_stop_replaces_the_models():
    o = resolve_options({"stop": ["A"]}, {"stop": ["Z"]})
    assert o.stop == ("Z",)


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [("num_ctx", "2048", 2048), ("temperature", "0", 0.0), ("use_mmap", "false", False),
     ("stop", "###", ("###",)), ("num_predict", 5.0, 5), ("seed", "42", 42)],
)
def test_values_are_typed(name, raw, value):
    assert coerce_option(name, raw) == value


@pytest.mark.parametrize(
    ("name", "raw"),
    [("num_ctx", "big"), ("temperature", "hot"), ("use_mmap", "maybe"), ("top_k", 1.5),
     ("num_predict", True), ("stop", 5), ("no_such_option", "1")],
)
def test_bad_values_are_clear_errors(name, raw):
    with pytest.raises(InvalidRequest, match=name):
        coerce_option(name, raw)


@pytest.mark.parametrize(
    "options",
    [{"num_predict": -5}, {"num_ctx": 0}, {"temperature": -1}, {"top_p": 2}, {"mirostat": 3}],
)
def test_out_of_range_values_are_refused(options):
    with pytest.raises(InvalidRequest):
        resolve_options(options)


def test_unknown_api_options_are_ignored_but_strict_refuses():
    assert resolve_options({"penalize_newline": True}) == Options()
    with pytest.raises(InvalidRequest, match="unknown option"):
        resolve_options({"penalize_newline": True}, strict=True)


@pytest.mark.parametrize("value", [100000, 513, "100000"])
def test_num_thread_past_what_ggml_can_run_is_refused(value):
    # 100000 made libgomp fail to create the threads and took the whole server down
    with pytest.raises(InvalidRequest, match="num_thread"):
        resolve_options({"num_thread": value})


@pytest.mark.parametrize("value", [0, 1, 512])
def test_num_thread_up_to_ggmls_limit_is_kept(value):
    assert resolve_options({"num_thread": value}).num_thread == value


FLOAT_OPTIONS = [n for n in OPTION_NAMES if isinstance(getattr(Options(), n), float)]


@pytest.mark.parametrize("name", FLOAT_OPTIONS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf", "-Infinity"])
def test_float_options_must_be_finite(name, value):
    with pytest.raises(InvalidRequest, match=name):
        coerce_option(name, value)
    with pytest.raises(InvalidRequest, match=name):
        parse_parameters([(name, str(value))])


def test_every_float_option_is_checked():
    assert {"temperature", "top_p", "min_p", "mirostat_eta"} <= set(FLOAT_OPTIONS)


# -- keep_alive ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["100000000h", "2562048h", 1e20, "1e20", 9223372037,
                                   math.inf, "inf", "Infinity"])
def test_keep_alive_longer_than_a_duration_can_hold_is_refused(value):
    """Past Go's largest duration (about 292 years) Ollama's parser refuses it too; here it
    was accepted and then /api/ps and ``locallama ps`` failed until the model unloaded."""
    with pytest.raises(InvalidRequest, match="keep_alive .*-1 to keep") as caught:
        parse_keep_alive(value)
    assert "292 years" in str(caught.value)


@pytest.mark.parametrize("value", [math.nan, "nan", "NaN"])
def test_keep_alive_that_is_not_a_number_is_refused(value):
    with pytest.raises(InvalidRequest, match="keep_alive"):
        parse_keep_alive(value)


@pytest.mark.parametrize(("value", "seconds"), [
    ("2562047h", 2562047 * 3600.0), (9223372036, 9223372036.0), ("-100000000h", None),
    (-1e20, None), (-math.inf, None)])
def test_keep_alive_up_to_the_longest_duration_and_any_negative_are_kept(value, seconds):
    assert parse_keep_alive(value) == seconds
