"""--json documents with a StreamedArray: the same bytes as json.dumps of the lists, and
items made while the document is written (a 100,000-entry document is never whole)."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from poppoarc.streamed import StreamedArray
from poppoarc.ui.output import write_json

# text with what JSON escapes or indents around: quotes, backslashes, newlines, non-ASCII
TEXT = st.text(alphabet=st.sampled_from('ab"\\\n\t é€😀:,[]{}'), max_size=8)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), TEXT,
                    st.floats(allow_nan=False, allow_infinity=False))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=20)


@st.composite
def documents(draw):
    """(document with some lists streamed, the same document with plain lists)."""
    def build(value):
        if isinstance(value, dict):
            pairs = [(key, build(item)) for key, item in value.items()]
            return ({k: s for k, (s, _) in pairs}, {k: p for k, (_, p) in pairs})
        if isinstance(value, list):
            pairs = [build(item) for item in value]
            streamed_items = [s for s, _ in pairs]
            plain = [p for _, p in pairs]
            if draw(st.booleans()):
                return StreamedArray(lambda items=streamed_items: iter(items)), plain
            return streamed_items, plain
        return value, value
    return build(draw(st.dictionaries(TEXT, VALUES, max_size=5)))


def written(document) -> str:
    pieces: list[str] = []
    write_json(document, pieces.append)
    return "".join(pieces)


@settings(max_examples=300, deadline=None)
@given(documents())
def test_streamed_arrays_give_the_bytes_json_dumps_gives(pair):
    streamed, plain = pair
    assert written(streamed) == json.dumps(plain, ensure_ascii=False, indent=2)


def test_empty_nested_and_top_level_streamed_arrays():
    for document, plain in [
        ({"a": StreamedArray(lambda: [])}, {"a": []}),
        ({"a": [StreamedArray(lambda: [1, {"b": [2]}])]}, {"a": [[1, {"b": [2]}]]}),
        ({"a": {"b": StreamedArray(lambda: ["x\ny", {}])}}, {"a": {"b": ["x\ny", {}]}}),
    ]:
        assert written(document) == json.dumps(plain, ensure_ascii=False, indent=2)
    # the placeholder is never confused with a value that looks like one
    lookalike = {"a": "streamed-0", "b": StreamedArray(lambda: ["streamed-0"])}
    assert json.loads(written(lookalike)) == {"a": "streamed-0", "b": ["streamed-0"]}


def test_items_are_made_one_at_a_time_while_written():
    pieces: list[str] = []
    made = []

    def items():
        for number in range(3):
            # every item before this one is already out: nothing is gathered first
            assert sum(f'"n": {n}' in "".join(pieces) for n in range(number)) == number
            made.append(number)
            yield {"n": number}

    write_json({"entries": StreamedArray(items), "after": True}, pieces.append)
    assert made == [0, 1, 2]
    assert json.loads("".join(pieces)) == {"entries": [{"n": 0}, {"n": 1}, {"n": 2}],
                                           "after": True}


def test_inspect_entries_json_through_the_cli_lists_every_record(cli):
    packed = cli.pack()
    code, document = cli.json("inspect", packed["id"], "--entries")
    assert code == 0
    paths = [e["path"] for e in document["entries"]]
    assert len(paths) == document["manifest"]["layout"]["entries"] and len(set(paths)) == len(paths)
