"""--metrics-selector: parsed like PromQL's matcher lists, canonical when rendered, PromQL semantics when matching."""

from __future__ import annotations

import pytest

from gpuctl.sources.selector import parse_selector


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ('cluster="prod-a"', 'cluster="prod-a"'),
        ('{cluster="prod-a", env=~"gpu-.*"}', 'cluster="prod-a",env=~"gpu-.*"'),
        ("region!='eu'", 'region!="eu"'),
        ("dc!~`x\\d+`", 'dc!~"x\\\\d+"'),  # back quotes are raw; the backslash is escaped when rendered
        ('a="say \\"hi\\""', 'a="say \\"hi\\""'),
    ],
)
def test_valid_selectors_render_canonically(text: str, canonical: str) -> None:
    assert parse_selector(text).promql() == canonical


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("cluster=prod", "expected a quoted value"),
        ('cluster="prod', "unterminated string"),
        ('cluster="a" env="b"', "expected ',' between matchers"),
        ('cluster=~"("', "not a valid regular expression"),
        ('__name__="DCGM_FI_DEV_GPU_UTIL"', "__name__ cannot be selected"),
        ('cluster="a\\q"', "unknown escape"),
        ("{}", "at least one label matcher"),
        ('9lives="x"', "expected a label name"),
        ('cluster>"a"', "expected =, !=, =~ or !~"),
    ],
)
def test_malformed_selectors_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_selector(text)


def test_matching_follows_promql() -> None:
    sel = parse_selector('cluster="prod-a",env=~"gpu|ml",team!="x",zone!~"eu-.*"')
    assert sel.matches({"cluster": "prod-a", "env": "ml", "zone": "us-1"})
    assert not sel.matches({"cluster": "prod-a", "env": "ml-2"})  # regexes are anchored
    assert not sel.matches({"cluster": "prod-b", "env": "ml"})
    assert not sel.matches({"env": "ml"})  # a missing label is ""
    assert not sel.matches({"cluster": "prod-a", "env": "gpu", "zone": "eu-west"})
    assert not sel.matches({"cluster": "prod-a", "env": "gpu", "team": "x"})
