from hypothesis import given, settings
from hypothesis import strategies as st

from locallama.engine.stops import StopMatcher, Utf8Stream, partial_suffix


def run(stops, pieces):
    matcher = StopMatcher(stops)
    out, stopped = [], False
    for piece in pieces:
        result = matcher.feed(piece)
        out.append(result.text)
        if result.stopped:
            stopped = True
            break
    if not stopped:
        out.append(matcher.flush())
    return "".join(out), stopped


def test_stop_split_across_pieces_does_not_leak():
    text, stopped = run(["</stop>"], ["Hello </s", "to", "p> more"])
    assert (text, stopped) == ("Hello ", True)


def test_text_that_only_looked_like_a_stop_is_released():
    text, stopped = run(["</stop>"], ["a </s", "x and more"])
    assert (text, stopped) == ("a </sx and more", False)


def test_held_back_tail_is_flushed_at_the_end():
    text, stopped = run(["END"], ["the E", "N"])
    assert (text, stopped) == ("the EN", False)


def test_earliest_of_several_stops_wins():
    text, _ = run(["b", "abc"], ["xxab", "c"])
    assert text == "xxa"


def test_no_stops_passes_through():
    assert run([], ["a", "b"]) == ("ab", False)


def test_utf8_split_across_tokens_waits_for_the_rest():
    stream = Utf8Stream()
    data = "é€".encode()
    assert stream.feed(data[:1]) == ""
    assert stream.feed(data[1:3]) == "é"
    assert stream.feed(data[3:]) == "€"
    assert stream.flush() == ""


def test_the_result_names_the_stop_that_matched():
    matcher = StopMatcher(["END", "</s>"])
    first = matcher.feed("one </")
    assert (first.text, first.stop) == ("one ", None)
    result = matcher.feed("s> two END")  # the earliest in the text, split across pieces
    assert (result.text, result.stopped, result.stop) == ("", True, "</s>")


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab<>/é", max_size=12),
       st.lists(st.text(alphabet="ab<>/é", min_size=1, max_size=6), max_size=4))
def test_the_held_back_tail_is_the_longest_one_a_word_can_still_grow_from(text, words):
    """partial_suffix against its definition, tried for every length."""
    longest = max((n for w in words for n in range(1, min(len(w) - 1, len(text)) + 1)
                   if text.endswith(w[:n])), default=0)
    assert partial_suffix(text, tuple(words)) == longest

