"""Loading playbook files: every error names the file, the line and the field; the shipped ones load."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuctl.errors import ConfigError, FileProblem, PlaybookError
from gpuctl.playbooks.loader import Catalog, builtin_dir, catalog_from, load_catalog, parse_playbook
from gpuctl.playbooks.spec import Action, Check, Playbook
from tests.unit.playbooks.conftest import MINIMAL

SHIPPED = {"reclaim-idle-gpus", "relabel-mig", "scale-pool", "adjust-quota"}


def problems_of(text: str, source: str = "site/demo.yaml") -> tuple[FileProblem, ...]:
    with pytest.raises(PlaybookError) as err:
        parse_playbook(text, source)
    assert err.value.problems, "a PlaybookError always carries its problems"
    for p in err.value.problems:
        assert str(p) in str(err.value)
    return err.value.problems


def only(text: str, source: str = "site/demo.yaml") -> FileProblem:
    found = problems_of(text, source)
    assert len(found) == 1, found
    return found[0]


def test_minimal_is_valid() -> None:
    playbook = parse_playbook(MINIMAL, "demo.yaml")
    assert playbook.name == "demo" and playbook.guardrails.deadline == 300
    assert playbook.parameters["count"].allowed() == "int 1..5"


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "says"),
    [
        ("reversible: false", "reversible: false\ncolour: blue", 6, "colour", "unknown field"),
        ("    max: 5\n", "    max: 5\n    maximum: 9\n", 12, "parameters.count.maximum", "unknown field"),
        ("    max: 5", "    max: five", 11, "parameters.count.max", "valid integer"),
        ("reversible: false", "reversible: 'no'", 5, "reversible", "valid boolean"),
        ("    default: 2", "    default: 9", 7, "parameters.count", "default 9 is above the maximum 5"),
        ("    min: 1", "    min: 7", 7, "parameters.count", "min 7 is above max 5"),
        ("    type: int", "    type: integer", 7, "parameters.count", "'integer'"),
        ("actions: [cordon_node]", "actions: [cordon_node, reboot_node]", 17, "actions[1]", "'evict_pods'"),
        ("  deadline: 5m", "  deadline: soon", 21, "guardrails.deadline", "'soon' is not a duration"),
        ("  deadline: 5m", "  deadline: 5m\n  max_pods: 0", 22, "guardrails.max_pods", "greater than or equal to 1"),
        ("name: demo", "name: Demo_Playbook", 1, "name", "should match pattern"),
        ("  by: [count]", "  by: [count, size]", 13, "target", "target.by names no parameter size"),
        ("  - {verb: patch, resource: nodes, namespaced: false}", "  - {verb: delete, resource: nodes, namespaced: false}",
         19, "permissions[0].verb", "'create', 'patch' or 'update'"),
    ],
)  # fmt: skip
def test_each_error_names_file_line_and_field(old: str, new: str, line: int, field: str, says: str) -> None:
    assert old in MINIMAL
    problem = only(MINIMAL.replace(old, new, 1))
    assert (problem.file, problem.line, problem.field) == ("site/demo.yaml", line, field)
    assert says in problem.message
    assert str(problem).startswith(f"site/demo.yaml:{line}: {field}: ")


def test_a_missing_field_is_named_at_its_parent() -> None:
    problem = only(MINIMAL.replace("    help: how many\n", ""))
    assert (problem.line, problem.field, problem.message) == (7, "parameters.count.help", "required field is missing")
    problem = only(MINIMAL.replace("guardrails:\n  deadline: 5m\n", ""))
    assert (problem.line, problem.field) == (1, "guardrails")


def test_every_problem_is_reported_at_once() -> None:
    text = MINIMAL.replace("reversible: false", "reversible: maybe").replace("  deadline: 5m", "  deadline: never")
    assert [(p.line, p.field) for p in problems_of(text)] == [(5, "reversible"), (21, "guardrails.deadline")]


def test_permissions_must_be_exactly_what_the_actions_need() -> None:
    missing = only(MINIMAL.replace("actions: [cordon_node]", "actions: [cordon_node, evict_pods]"))
    assert (missing.line, missing.field) == (18, "permissions")
    assert "missing create pods/eviction (for evict_pods)" in missing.message
    extra = MINIMAL.replace("namespaced: false}", "namespaced: false}\n  - {verb: patch, resource: pods, namespaced: true}")
    assert "patch pods is needed by none of the actions" in only(extra).message
    wrong_scope = only(MINIMAL.replace("namespaced: false}", "namespaced: true}"))
    assert "missing patch nodes" in wrong_scope.message


def test_a_parameter_may_only_tighten_a_guardrail() -> None:
    text = MINIMAL.replace("  count:", "  max_pods:").replace("by: [count]", "by: []") + "  max_pods: 3\n"
    problem = only(text)
    assert (problem.line, problem.field) == (20, "guardrails")
    assert "parameter max_pods must declare max <= 3 so it cannot lift guardrail max_pods" in problem.message
    assert parse_playbook(text.replace("  max_pods: 3\n", "  max_pods: 5\n"), "demo.yaml").guardrails.max_pods == 5


def test_parameter_groups_and_requires_are_checked() -> None:
    extra = "  size:\n    type: int\n    help: size\n    requires: [colour]\n"
    problem = only(MINIMAL.replace("target:", extra + "target:"))
    assert (problem.line, problem.field) == (6, "parameters") and "size requires 'colour'" in problem.message
    group = MINIMAL.replace("target:", "exactly_one_of: [[size, count]]\ntarget:")
    assert "'size' is not a parameter" in only(group).message
    with_default = MINIMAL.replace("target:", "  size: {type: int, help: size}\nexactly_one_of: [[count, size]]\ntarget:")
    assert "count is required or has a default" in only(with_default).message


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("name: demo\nname: other\n", 2, "duplicate key 'name' (first at line 1)"),
        ("name: demo\n  bad: indent\n", 2, "not valid YAML"),
        ("name: [demo\n", 2, "not valid YAML"),
        ("base: &b {a: 1}\nother:\n  <<: *b\n", 3, "merge keys"),
        ("a: &x [*x]\n", 1, "a recursive alias"),
        ("---\nname: a\n---\nname: b\n", 3, "not valid YAML"),
    ],
)
def test_yaml_problems_have_a_line(text: str, line: int, says: str) -> None:
    problem = only(text)
    assert problem.line == line and says in problem.message


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    assert "alias bomb" in only("\n".join(lines) + "\n").message


def test_list_items_are_located() -> None:
    found = problems_of(MINIMAL.replace("  scopes: [pool]", "  scopes:\n    - pool\n    - cluster"))
    assert (found[0].line, found[0].field) == (18, "target.scopes[1]")
    assert "'namespace', 'pool' or 'cluster_queue'" in found[0].message and "(got 'cluster')" in found[0].message


def test_empty_and_non_mapping_files() -> None:
    assert only("").line == 1
    assert "valid dictionary" in only("- just\n- a list\n").message


def test_keys_stay_text() -> None:
    # YAML 1.1 reads a bare `on:` key as True; a definition's keys are what the author typed.
    problem = only(MINIMAL + "on: yes\n")
    assert (problem.field, problem.message) == ("on", "unknown field")


def test_file_name_must_be_the_playbook_name() -> None:
    problem = only(MINIMAL, "site/other.yaml")
    assert (problem.line, problem.field) == (1, "name")
    assert "'demo' must match the file name 'other'" in problem.message


def test_shipped_playbooks_load(catalog: Catalog) -> None:
    assert set(catalog.playbooks) == SHIPPED and len(catalog) == 4
    assert [p.name for p in catalog] == sorted(SHIPPED)
    for name, source in catalog.sources.items():
        assert Path(source).name == f"{name}.yaml" and Path(source).parent.name == "builtin"


def test_top_level_playbooks_folder_is_the_same_files() -> None:
    # One source of truth: the repository's playbooks/ is a link to the packaged folder.
    top = Path(__file__).parents[3] / "playbooks"
    assert top.is_symlink() and top.resolve() == Path(str(builtin_dir())).resolve()


def test_shipped_guardrails(catalog: Catalog) -> None:
    reclaim = catalog.get("reclaim-idle-gpus").guardrails
    assert (reclaim.max_pods, reclaim.max_gpus, reclaim.min_pod_age) == (50, 128, 1800)
    assert "kube-system" in reclaim.protected.namespaces and reclaim.protected.on_match == "skip"
    assert {(o.annotation or o.label, o.value) for o in reclaim.protected.opt_out} >= {("gpuctl.io/reclaim", "never")}
    assert {Check.eviction_api_only, Check.pdb_respected, Check.spare_if_busy_again} <= set(reclaim.checks)
    relabel = catalog.get("relabel-mig")
    assert relabel.approval.required and relabel.reversible and relabel.guardrails.protected.on_match == "refuse"
    assert {Check.mig_profile_exists, Check.mig_profile_fits_node, Check.drain_before_relabel} <= set(relabel.guardrails.checks)
    assert Action.evict_pods in relabel.actions and Action.set_node_label in relabel.actions
    assert Check.autoscaler_bounds in catalog.get("scale-pool").guardrails.checks
    assert Check.not_below_usage in catalog.get("adjust-quota").guardrails.checks
    for playbook in catalog:
        if Action.evict_pods in playbook.actions:
            assert {Check.eviction_api_only, Check.pdb_respected} <= set(playbook.guardrails.checks), playbook.name


def test_site_directory_adds_playbooks(site: Path) -> None:
    (site / "demo.yaml").write_text(MINIMAL)
    (site / "notes.txt").write_text("not a playbook")
    catalog = load_catalog(site)
    assert set(catalog.playbooks) == SHIPPED | {"demo"}
    assert catalog.sources["demo"] == str(site / "demo.yaml")


def test_duplicate_names_name_both_files(site: Path) -> None:
    (site / "scale-pool.yml").write_text(MINIMAL.replace("name: demo", "name: scale-pool"))
    with pytest.raises(PlaybookError) as err:
        load_catalog(site)
    (problem,) = err.value.problems
    assert problem.file == str(site / "scale-pool.yml") and problem.line == 1 and problem.field == "name"
    assert f"already defined in {Path(str(builtin_dir())) / 'scale-pool.yaml'}" in problem.message


def test_all_bad_files_are_reported_together() -> None:
    with pytest.raises(PlaybookError) as err:
        catalog_from([("a/demo.yaml", MINIMAL.replace("max: 5", "max: x")), ("b/x.yaml", "a: 1\nname: [")])
    assert [(p.file, p.line) for p in err.value.problems] == [("a/demo.yaml", 11), ("b/x.yaml", 2)]


def test_missing_site_directory_and_unknown_name(tmp_path: Path, catalog: Catalog) -> None:
    with pytest.raises(PlaybookError, match="does not exist"):
        load_catalog(tmp_path / "nope")
    with pytest.raises(PlaybookError) as err:
        catalog.get("reclaim")
    assert isinstance(err.value, ConfigError)
    assert "no playbook named 'reclaim'" in str(err.value) and "reclaim-idle-gpus" in str(err.value)


def test_models_are_frozen_and_json_round_trips(catalog: Catalog) -> None:
    for playbook in catalog:
        again = Playbook.model_validate_json(playbook.model_dump_json())
        assert again == playbook
    with pytest.raises(ValueError, match="frozen"):
        catalog.get("scale-pool").reversible = False  # type: ignore[misc]


def test_reference_names_every_action_check_selector_and_type() -> None:
    """docs/playbooks.md stays in step with the closed sets a file may use."""
    from typing import get_args

    from gpuctl.playbooks.spec import Parameter, Selector

    union = get_args(Parameter)[0]
    types = [tag for cls in get_args(union) for tag in get_args(cls.model_fields["type"].annotation)]
    assert len(types) == 12
    reference = (Path(__file__).parents[3] / "docs" / "playbooks.md").read_text()
    for name in [*Action, *Check, *Selector, *types]:
        assert f"`{name}`" in reference, name
