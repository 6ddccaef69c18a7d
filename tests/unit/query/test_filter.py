from gpuctl.query.filter import Facets, Filter

POD = Facets(namespace="ml-research", pool="h100-train", node="h100-train-node-001", pod="llm-70b-0", model="NVIDIA H100")


def test_empty_filter_matches_everything() -> None:
    f = Filter.parse("   ")
    assert not f.active
    assert f.matches(POD)


def test_field_terms_match_substrings_case_insensitively() -> None:
    assert Filter.parse("ns:ML pool:h100").matches(POD)
    assert not Filter.parse("ns:vision").matches(POD)
    assert Filter.parse("namespace:research model:h100").matches(POD)


def test_bare_words_search_every_field_and_terms_are_anded() -> None:
    assert Filter.parse("70b").matches(POD)
    assert Filter.parse("node-001 h100").matches(POD)
    assert not Filter.parse("node-001 a100").matches(POD)


def test_unknown_prefix_is_a_plain_word_and_empty_value_is_ignored() -> None:
    f = Filter.parse("team:x ns:")
    assert f.terms == ((None, "team:x"),)
    assert Filter.parse("ns:").active is False


def test_terms_on_fields_a_row_lacks_are_ignored_with_applies() -> None:
    quota = Facets(namespace="vision")
    f = Filter.parse("ns:vision node:abc")
    assert f.matches(quota, applies=frozenset({"namespace"}))
    assert not f.matches(quota)
