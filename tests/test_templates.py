"""Prompt templates in the core: parsing, filling, the fan-out with variants, and what history keeps."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_tui.api.types import GenerationRequest, MultiImageRequest
from kling_tui.history.store import HistoryStore, record_from_toml, record_to_toml
from kling_tui.work.templates import (
    MAX_TASKS,
    count,
    escape,
    fill,
    parse,
    parse_assignment,
    plain_prompt,
    problems,
    split_values,
)
from kling_tui.work.variants import FanOut, expand, fan_out_problems


def prompts(body: str, values=None, *, zipped: bool = False) -> list[str]:
    template, found = parse(body)
    assert found == []
    return [f.prompt for f in fill(template, values or {}, zipped=zipped)]


def rules(body: str) -> list[str]:
    return [p.rule for p in parse(body)[1]]


def test_alternatives_and_variables_make_every_combination_in_order():
    assert prompts("a {red|blue} {{animal}}", {"animal": ["cat", "dog"]}) == [
        "a red cat",
        "a red dog",
        "a blue cat",
        "a blue dog",
    ]


def test_a_variable_used_twice_takes_one_value_in_both_places():
    assert prompts("{{x}} and {{ x }}", {"x": ["a", "b"]}) == ["a and a", "b and b"]


def test_zipped_pairs_the_nth_values_and_repeats_a_single_one():
    assert prompts("{{a}}-{{b}} {{c}}", {"a": ["1", "2"], "b": ["x", "y"], "c": ["k"]}, zipped=True) == [
        "1-x k",
        "2-y k",
    ]


def test_zipped_slots_of_different_lengths_are_refused_naming_each_count():
    template, _ = parse("{{a}} {b|c|d}")
    found = problems(template, {"a": ["1", "2"]}, zipped=True)
    assert [p.rule for p in found] == ["zipped slots need the same number of values ({{a}} has 2, {1} has 3)"]


def test_alternatives_are_trimmed_and_an_empty_one_leaves_no_double_space():
    assert prompts("a { very | } big dog") == ["a very big dog", "a big dog"]


def test_escaped_braces_and_bars_are_literal():
    assert prompts(r"json \{x\} {a\|b|c}") == ["json {x} a|b", "json {x} c"]
    assert plain_prompt(r"no slots \{here\} C:\path") == r"no slots {here} C:\path"


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ("a {red", "{ is never closed with }"),
        ("a }", "} without an opening {"),
        ("{{name", "{{ is never closed with }}"),
        ("{{two words}}", "{{two words}} is not a variable name"),
        ("{animal} walks", "{animal} has one alternative: write {{animal}} for a variable"),
        ("{}", "{} is empty"),
        ("{a|{b}}", "alternatives cannot contain {"),
    ],
)
def test_a_broken_template_is_one_clear_problem_on_the_prompt(body, rule):
    found = parse(body)[1]
    assert len(found) == 1
    assert found[0].field == "prompt"
    assert rule in found[0].rule


def test_a_variable_without_values_is_named():
    template, _ = parse("a {{animal}} on {{place}}")
    found = problems(template, {"animal": ["cat"], "place": []})
    assert [(p.field, p.rule) for p in found] == [("{{place}}", "is used in the prompt but has no values")]


def test_values_split_on_commas_trimmed_with_an_escaped_comma_kept():
    assert split_values(" red , dark\\, blue,, ") == ["red", "dark, blue"]
    assert parse_assignment("animal= cat ,dog") == ("animal", ["cat", "dog"])
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_assignment("animal")
    with pytest.raises(ValueError, match="not a variable name"):
        parse_assignment("2x=a")


@given(st.lists(st.lists(st.text("abcxyz ", min_size=1, max_size=4), min_size=1, max_size=4), min_size=1, max_size=4))
def test_the_count_is_the_product_of_the_slots_and_fill_makes_that_many(groups):
    body = " ".join("{" + "|".join(g) + "|}" for g in groups)  # each with an empty alternative too
    template, found = parse(body)
    assert found == []
    expected = math.prod(len(g) + 1 for g in groups)
    assert count(template, {}) == expected
    made = fill(template, {})
    assert len(made) == expected
    assert all(len(f.values) == len(groups) for f in made)


@given(st.text(alphabet=st.sampled_from("ab {}|\\\n")))
def test_an_escaped_prompt_is_no_template_and_makes_itself(text):
    template, found = parse(escape(text))
    assert found == [] and not template.is_template
    assert plain_prompt(escape(text)) == text


@given(st.lists(st.integers(1, 5), min_size=1, max_size=4), st.integers(1, 5))
def test_zipped_count_is_the_common_length(lengths, common):
    values = {f"v{i}": [str(k) for k in range(common if n > 1 else 1)] for i, n in enumerate(lengths)}
    template, _ = parse(" ".join(f"{{{{{name}}}}}" for name in values))
    assert problems(template, values, zipped=True) == []
    assert len(fill(template, values, zipped=True)) == max(len(v) for v in values.values())


def test_the_fan_out_multiplies_templates_with_models_and_ratios():
    request = GenerationRequest(prompt="a {red|blue} {{animal}}", model_name="kling-v1", aspect_ratio="16:9")
    made = expand(request, FanOut(models=["kling-v2"], ratios=["1:1"], variables={"animal": ["cat", "dog", "owl"]}))
    assert len(made) == 2 * 3 * 2 * 2
    assert {(r.prompt, r.model_name, r.aspect_ratio) for r in made} >= {("a blue owl", "kling-v2", "1:1")}
    assert made[0].template is not None and made[0].template.body == "a {red|blue} {{animal}}"
    assert dict(made[0].template.values) == {"{1}": "red", "animal": "cat"}
    assert "template" not in made[0].params()  # never sent


def test_each_prompt_line_is_its_own_template():
    request = GenerationRequest(prompt="a {red|blue} car\na {{animal}}", model_name="kling-v1")
    made = expand(request, FanOut(split_lines=True, variables={"animal": ["cat"]}))
    assert [r.prompt for r in made] == ["a red car", "a blue car", "a cat"]


def test_a_prompt_without_slots_fans_out_as_before_with_its_escapes_resolved():
    request = MultiImageRequest(subject_images=["a.png"], prompt=r"a \{b\}", model_name="kling-v2")
    (made,) = expand(request)
    assert made.prompt == "a {b}" and made.template is None


def test_more_than_the_cap_is_refused_naming_the_count_and_never_expanded():
    request = GenerationRequest(prompt="{{a}} {{b}} {{c}}", model_name="kling-v1")
    values = {name: [str(i) for i in range(100)] for name in "abc"}  # a million prompts
    found = fan_out_problems(request, FanOut(variables=values))
    assert [p.rule for p in found] == [f"makes 1000000 tasks, more than the {MAX_TASKS} one submit may send"]
    assert len(expand(request, FanOut(variables=values))) == 1  # the form can still estimate and show it


def test_the_cap_counts_variants_too():
    request = GenerationRequest(prompt="{{a}}", model_name="kling-v1", aspect_ratio="16:9")
    found = fan_out_problems(request, FanOut(ratios=["1:1"], variables={"a": [str(i) for i in range(251)]}))
    assert [p.rule for p in found] == [f"makes 502 tasks, more than the {MAX_TASKS} one submit may send"]


def test_values_for_a_variable_no_line_uses_are_a_problem():
    request = GenerationRequest(prompt="a {{animal}}", model_name="kling-v1")
    found = fan_out_problems(request, FanOut(variables={"animal": ["cat"], "aminal": ["dog"]}))
    assert [(p.field, p.rule) for p in found] == [("{{aminal}}", "has values but the prompt never uses it")]


def test_history_keeps_the_template_and_its_values_and_search_finds_them(tmp_path):
    store = HistoryStore(tmp_path / "tasks")
    request = GenerationRequest(prompt="a {red|blue} {{animal}}", model_name="kling-v1")
    made = expand(request, FanOut(variables={"animal": ["axolotl"]}))[1]
    assert made.template is not None
    record = store.new_record(
        "generation", made.params(), template=(made.template.body, made.template.values), owner=None
    )
    text = (tmp_path / "tasks" / record.local_id / "task.toml").read_text()
    assert 'body = "a {red|blue} {{animal}}"' in text
    again = record_from_toml(record.local_id, record_to_toml(record))
    assert again.template == "a {red|blue} {{animal}}"
    assert list(again.template_values.items()) == [("{1}", "blue"), ("animal", "axolotl")]
    store.update(record.local_id, params={"prompt": "a blue creature"})  # the value is then only in the template
    assert [r.local_id for r in store.recent(10, words="axolotl")] == [record.local_id]
    store.close()
