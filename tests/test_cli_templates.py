"""Prompt templates from the command line: `--var`, `--zip`, against the sandbox."""

from __future__ import annotations

import json

from cli_helpers import kling

from kling_tui.base.locations import history_dir
from kling_tui.history.store import HistoryStore


def _lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_generate_makes_one_task_per_combination_recorded_with_its_values(sandbox):
    run = kling(
        "generate",
        "a {red|blue} {{animal}} in the snow",
        "--var",
        "animal=fox, owl",
        "--wait",
        "--json",
        sandbox=sandbox,
    )
    assert run.code == 0, run.stderr
    tasks = _lines(run.stdout)
    assert [t["prompt"] for t in tasks] == [
        "a red fox in the snow",
        "a red owl in the snow",
        "a blue fox in the snow",
        "a blue owl in the snow",
    ]
    assert all(t["status"] == "succeed" and t["images"] for t in tasks)
    assert {t["task_id"] for t in tasks} <= set(sandbox.state.tasks)
    assert [t["template"]["values"] for t in tasks][1] == {"{1}": "red", "animal": "owl"}
    assert {t["template"]["body"] for t in tasks} == {"a {red|blue} {{animal}} in the snow"}
    assert len({t["group"] for t in tasks}) == 1 and tasks[0]["group"]  # one variant group: the grid shows it

    shown = kling("show", tasks[3]["local_id"], sandbox=sandbox)
    assert "template:    a {red|blue} {{animal}} in the snow" in shown.stdout
    assert "values:      {1}=blue · animal=owl" in shown.stdout
    found = kling("list", "--search", "owl", "--json", sandbox=sandbox).json()
    assert {t["local_id"] for t in found} == {tasks[1]["local_id"], tasks[3]["local_id"]}


def test_zip_pairs_the_values(sandbox):
    run = kling(
        "generate",
        "{{animal}} at {{time}}",
        "--var",
        "animal=fox,owl",
        "--var",
        "time=dawn,dusk",
        "--zip",
        "--json",
        sandbox=sandbox,
    )
    assert run.code == 0, run.stderr
    assert [t["prompt"] for t in _lines(run.stdout)] == ["fox at dawn", "owl at dusk"]


def test_omni_takes_a_template_too(sandbox):
    run = kling("omni", "a {{animal}} poster", "--var", "animal=fox,owl", "--json", sandbox=sandbox)
    assert run.code == 0, run.stderr
    tasks = _lines(run.stdout)
    assert [(t["kind"], t["prompt"]) for t in tasks] == [("omni", "a fox poster"), ("omni", "a owl poster")]


def test_bad_templates_send_nothing_and_name_the_variable_or_the_rule(sandbox):
    cases = [
        (["a {{animal}}"], "{{animal}} (--var): is used in the prompt but has no values"),
        (
            ["a {{animal}}", "--var", "animal=fox", "--var", "colour=red"],
            "{{colour}} (--var): has values but the prompt never uses it",
        ),
        (["a {red"], "prompt (PROMPT): at “{red”: { is never closed with }"),
        (
            ["{{a}} {{b}}", "--var", "a=1,2", "--var", "b=1,2,3", "--zip"],
            "zipped slots need the same number of values ({{a}} has 2, {{b}} has 3)",
        ),
        (
            [
                "{{a}} {{b}}",
                "--var",
                "a=" + ",".join(map(str, range(30))),
                "--var",
                "b=" + ",".join(map(str, range(30))),
            ],
            "makes 900 tasks, more than the 500 one submit may send",
        ),
        (
            ["a {red|blue}", "--external-task-id", "mine"],
            "external_task_id (--external-task-id): names one task, and the template makes 2",
        ),
        (
            ["{{a}}", "--var", "a=fine," + "x" * 2600],
            "must be at most 2500 characters (got 2600) [variant 2 (kling-v1, None, a=",
        ),
    ]
    for arguments, message in cases:
        run = kling("generate", *arguments, sandbox=sandbox)
        assert run.code == 2, (arguments, run.stderr)
        assert message in run.stderr, (arguments, run.stderr)
        assert "Traceback" not in run.stderr
    assert sandbox.state.tasks == {}
    assert HistoryStore(history_dir()).recent(10) == []


def test_a_bad_var_is_an_argument_error():
    run = kling("generate", "a {{x}}", "--var", "x")
    assert run.code == 2
    assert "argument --var: must be NAME=VALUE,VALUE… (got 'x')" in run.stderr


def test_escaped_braces_are_sent_literally_and_make_one_plain_task(sandbox):
    run = kling("generate", r"a sign saying \{hello\}", "--json", sandbox=sandbox)
    assert run.code == 0, run.stderr
    task = run.json()
    assert task["prompt"] == "a sign saying {hello}" and task["template"] is None


def test_templates_lists_the_saved_ones_with_the_options_that_fill_them(sandbox):
    from kling_tui.work.saved_templates import SavedTemplate, save_template

    assert "no saved templates" in kling("templates").stdout
    save_template(
        SavedTemplate(
            "pets", "a {{animal}}, {{style}}", {"animal": ["fox", "owl"], "style": ["ink, wash", "oil"]}, True
        )
    )
    listed = kling("templates")
    assert listed.code == 0
    assert listed.stdout.splitlines() == [
        "pets: a {{animal}}, {{style}}",
        "  --var animal=fox,owl",
        "  --var style=ink\\, wash,oil",
        "  --zip",
    ]
    assert kling("templates", "--json").json() == [
        {
            "name": "pets",
            "body": "a {{animal}}, {{style}}",
            "variables": {"animal": ["fox", "owl"], "style": ["ink, wash", "oil"]},
            "zip": True,
        }
    ]
    run = kling(
        "generate",
        "a {{animal}}, {{style}}",
        "--var",
        "animal=fox,owl",
        "--var",
        "style=ink\\, wash,oil",
        "--zip",
        "--json",
        sandbox=sandbox,
    )
    assert [t["prompt"] for t in _lines(run.stdout)] == ["a fox, ink, wash", "a owl, oil"]
