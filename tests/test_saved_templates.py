"""Saved templates on disk: replaced by name, sorted, and a damaged file never lost."""

from __future__ import annotations

import pytest

from kling_tui.work.saved_templates import SavedTemplate, TemplateNameError, load_templates, save_template


def test_saving_replaces_by_name_and_lists_by_name(tmp_path):
    path = tmp_path / "templates.toml"
    save_template(SavedTemplate("Zebra", "a {{x}}", {"x": ["a, b", "c"]}), path)
    save_template(SavedTemplate("apple", "{a|b}"), path)
    templates, warnings = save_template(SavedTemplate(" Zebra ", "a {{y}}", {"y": ["1"]}, zipped=True), path)
    assert warnings is None
    assert [t.name for t in templates] == ["apple", "Zebra"]
    assert load_templates(path) == (
        [SavedTemplate("apple", "{a|b}"), SavedTemplate("Zebra", "a {{y}}", {"y": ["1"]}, True)],
        [],
    )
    assert oct(path.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    ("name", "rule"), [("  ", "must not be empty"), ("x" * 81, "at most 80"), ("a\x1b[2J", "printable")]
)
def test_a_bad_name_is_refused_naming_the_rule(tmp_path, name, rule):
    with pytest.raises(TemplateNameError, match=rule):
        save_template(SavedTemplate(name, "{a|b}"), tmp_path / "templates.toml")
    assert not (tmp_path / "templates.toml").exists()


def test_a_damaged_file_is_reported_and_set_aside_before_a_save(tmp_path):
    path = tmp_path / "templates.toml"
    path.write_text("[[template]]\nname = 'ok'\nbody = 'a {a|b}'\n[[template]]\nname = 3\n")
    templates, warnings = load_templates(path)
    assert [t.name for t in templates] == ["ok"]
    assert warnings == [f"{path}: template 2 is not name, body, zip and variables; it was skipped"]
    _, aside = save_template(SavedTemplate("new", "{{x}}"), path)
    assert aside is not None and "name = 3" in open(aside).read()
    assert [t.name for t in load_templates(path)[0]] == ["new", "ok"]

    path.write_text("not [toml")
    assert load_templates(path)[0] == []
    assert "cannot be read" in load_templates(path)[1][0]
