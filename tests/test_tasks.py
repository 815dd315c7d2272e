"""Tests for `vtde_bench.tasks`: task cards parsed into frozen specs, every mistake a `UserError`
naming the card and the field, and the registry (names, groups, did-you-mean).

Cards are written in tmp_path; the registry is pointed at a tmp folder by
monkeypatching `vtde_bench.tasks.tasks_dir`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import helpers
import vtde_bench.tasks as T
from vtde_bench.errors import UserError
from vtde_bench.kinds import get_kind
from vtde_bench.kinds.classification import ClassificationTask
from vtde_bench.tasks import load_card, load_tasks, tasks_dir

# ----------------------------------------------------------------------------- building cards


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(v)


def toml_text(data: dict) -> str:
    lines = [f"{k} = {_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for table, body in data.items():
        if isinstance(body, dict):
            lines += ["", f"[{table}]"] + [f"{k} = {_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


CLASSIFICATION_CARD = {
    "name": "toy",
    "type": "zeroshot_classification",
    "version": 1,
    "description": "a toy classification task",
    "source": {"path": "data/toy", "format": "parquet", "split": "test", "num_samples": 12, "label_column": "label"},
    "prompts": {"classnames": "classnames.txt", "templates": "templates.txt"},
}
RETRIEVAL_CARD = {
    "name": "toyret",
    "type": "retrieval",
    "version": 2,
    "source": {"hub": "org/toy-captions", "revision": "0123456789abcdef0123456789abcdef01234567", "split": "test",
               "num_samples": 5, "caption_column": "caps"},
}


def make_card(folder: Path, base: dict, *, drop=(), classnames="cat\ndog\nbird\n", templates="a photo of a {c}.\n",
              filename="card.toml", **changes) -> Path:
    """Write `base` with dotted-key changes (`source__split="x"` → source.split) and dropped keys, plus prompt files."""
    data = json.loads(json.dumps(base))
    for key, value in changes.items():
        parts = key.split("__")
        target = data
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    for key in drop:
        parts = key.split(".")
        target = data
        for part in parts[:-1]:
            target = target[part]
        del target[parts[-1]]
    folder.mkdir(parents=True, exist_ok=True)
    if classnames is not None:
        (folder / "classnames.txt").write_text(classnames, encoding="utf-8")
    if templates is not None:
        (folder / "templates.txt").write_text(templates, encoding="utf-8")
    path = folder / filename
    path.write_text(toml_text(data), encoding="utf-8")
    return path


def card_error(path: Path, field: str) -> str:
    """Load a bad card; the UserError must name the card file and the field. Returns the message."""
    with pytest.raises(UserError) as info:
        load_card(path)
    message = str(info.value)
    assert str(path) in message, message
    assert f"'{field}'" in message, message
    return message


# ----------------------------------------------------------------------------- valid cards


def test_valid_classification_card_parses_into_a_frozen_spec(tmp_path):
    path = make_card(tmp_path / "cards", CLASSIFICATION_CARD, classnames="cat\n\n  dog  \n\nbird\n\n",
                     templates="a photo of a {c}.\n\nthe {c}.\n")
    task = load_card(path)
    assert isinstance(task, ClassificationTask)
    assert (task.name, task.version, task.description, task.type) == ("toy", 1, "a toy classification task", "zeroshot_classification")
    assert task.kind is get_kind("zeroshot_classification")
    assert task.classnames == ("cat", "dog", "bird")  # blank lines ignored, whitespace stripped
    assert task.templates == ("a photo of a {c}.", "the {c}.")
    assert task.source.split == "test" and task.source.num_samples == 12 and task.source.format == "parquet"
    assert task.source.label_column == "label" and task.source.caption_column is None
    assert task.source.image_column == "image"  # default
    assert task.source.hub is None and task.source.revision is None
    assert task.card_path == path.resolve()
    assert task.main_metric == "acc1"
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.source.split = "train"  # type: ignore[misc]


def test_valid_retrieval_card_parses_into_a_frozen_spec(tmp_path):
    path = make_card(tmp_path, RETRIEVAL_CARD, classnames=None, templates=None, main_metric="image_to_text_recall@5")
    task = load_card(path)
    assert task.kind is get_kind("retrieval") and not isinstance(task, ClassificationTask)
    assert (task.name, task.version, task.type) == ("toyret", 2, "retrieval")
    assert task.source.hub == "org/toy-captions" and task.source.revision.startswith("0123456789ab")
    assert task.source.caption_column == "caps" and task.source.label_column is None and task.source.path is None
    assert task.source.describe() == "org/toy-captions@0123456789ab"
    assert task.metrics == tuple(m.name for m in get_kind("retrieval").metrics) == (
        "image_to_text_recall@1", "image_to_text_recall@5", "image_to_text_recall@10", "text_to_image_recall@1",
        "text_to_image_recall@5", "text_to_image_recall@10", "mean_recall@1")
    assert task.main_metric == "image_to_text_recall@5"
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.version = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.source.hub = "x"  # type: ignore[misc]


def test_retrieval_defaults(tmp_path):
    path = make_card(tmp_path, RETRIEVAL_CARD, classnames=None, templates=None, drop=["source.caption_column"])
    task = load_card(path)
    assert task.source.caption_column == "captions" and task.main_metric == "mean_recall@1"


def test_card_written_by_the_test_helper_loads(tmp_path):
    """tests/helpers.write_card produces a valid card (other tests rely on it)."""
    path = helpers.write_card(tmp_path / "c" / "colours.toml", name="colours", kind="zeroshot_classification",
                              source={"path": "data", "format": "webdataset", "split": "test", "num_samples": 23},
                              classnames=["red", "green", "blue"])
    task = load_card(path)
    assert task.classnames == ("red", "green", "blue")
    assert task.templates == ("a photo of a {c}.", "a picture of the {c}.")
    assert task.source.path == (tmp_path / "c" / "data").resolve()


def test_templates_keep_other_braces_verbatim(tmp_path):
    """Templates are filled with str.replace('{c}', ...): '{x}', '{{' and '}}' must survive parsing untouched."""
    templates = "a {c} in {x} style.\n{{literal}} {c}\nan }odd{ {c} {0}\n"
    task = load_card(make_card(tmp_path, CLASSIFICATION_CARD, templates=templates))
    assert task.templates == ("a {c} in {x} style.", "{{literal}} {c}", "an }odd{ {c} {0}")
    assert [t.replace("{c}", "cat") for t in task.templates] == ["a cat in {x} style.", "{{literal}} cat", "an }odd{ cat {0}"]


def test_relative_data_path_is_resolved_against_the_card_folder_not_the_cwd(tmp_path, monkeypatch):
    path = make_card(tmp_path / "cards", CLASSIFICATION_CARD, source__path="../shared/toy")
    monkeypatch.chdir(tmp_path)  # resolving against the cwd would give tmp_path.parent/shared/toy
    task = load_card(path)
    assert task.source.path == (tmp_path / "shared" / "toy").resolve()
    assert task.source.path.is_absolute()


def test_absolute_data_path_is_kept(tmp_path):
    elsewhere = tmp_path / "somewhere" / "else"
    task = load_card(make_card(tmp_path / "cards", CLASSIFICATION_CARD, source__path=str(elsewhere)))
    assert task.source.path == elsewhere


def test_acc5_is_dropped_with_fewer_than_five_classes(tmp_path):
    four = load_card(make_card(tmp_path / "a", CLASSIFICATION_CARD, classnames="a\nb\nc\nd\n"))
    five = load_card(make_card(tmp_path / "b", CLASSIFICATION_CARD, classnames="a\nb\nc\nd\ne\n"))
    assert four.metrics == ("acc1", "mean_per_class_recall")
    assert five.metrics == ("acc1", "acc5", "mean_per_class_recall")
    assert load_card(make_card(tmp_path / "c", CLASSIFICATION_CARD, classnames="a\nb\nc\nd\ne\n", main_metric="acc5")).main_metric == "acc5"


# ----------------------------------------------------------------------------- errors: syntax, missing and unknown fields


def test_broken_toml_names_the_card(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('name = "toy\ntype = = 3\n')
    with pytest.raises(UserError) as info:
        load_card(path)
    assert str(path) in str(info.value) and "TOML" in str(info.value)


def test_non_utf8_card_is_a_user_error(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(UserError, match="latin1.toml"):
        load_card(path)


def test_missing_card_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_card(tmp_path / "nope.toml")


@pytest.mark.parametrize("field", ["name", "type", "version"])
def test_missing_top_level_field(tmp_path, field):
    card_error(make_card(tmp_path, CLASSIFICATION_CARD, drop=[field]), field)


@pytest.mark.parametrize("field", ["split", "num_samples"])
def test_missing_source_field(tmp_path, field):
    card_error(make_card(tmp_path, CLASSIFICATION_CARD, drop=[f"source.{field}"]), f"source.{field}")


def test_missing_source_table(tmp_path):
    message = card_error(make_card(tmp_path, CLASSIFICATION_CARD, drop=["source"]), "source")
    assert "[source]" in message


def test_source_that_is_not_a_table(tmp_path):
    data = {k: v for k, v in CLASSIFICATION_CARD.items() if k != "source"}
    path = make_card(tmp_path, data, source="somewhere")
    card_error(path, "source")


@pytest.mark.parametrize("field", ["classnames", "templates"])
def test_missing_prompt_field(tmp_path, field):
    card_error(make_card(tmp_path, CLASSIFICATION_CARD, drop=[f"prompts.{field}"]), f"prompts.{field}")


def test_classification_card_without_prompts(tmp_path):
    card_error(make_card(tmp_path, CLASSIFICATION_CARD, drop=["prompts"]), "prompts")


def test_unknown_top_level_key_suggests_the_close_one(tmp_path):
    message = card_error(make_card(tmp_path, CLASSIFICATION_CARD, descripton="typo"), "descripton")
    assert "did you mean 'description'" in message


def test_unknown_top_level_key_without_a_close_match_lists_allowed(tmp_path):
    message = card_error(make_card(tmp_path, CLASSIFICATION_CARD, zzzzzz=1), "zzzzzz")
    assert "allowed" in message and "main_metric" in message


def test_unknown_top_level_table_is_rejected(tmp_path):
    card_error(make_card(tmp_path, CLASSIFICATION_CARD, extra__x=1), "extra")


def test_unknown_source_key_suggests_the_close_one(tmp_path):
    message = card_error(make_card(tmp_path, CLASSIFICATION_CARD, source__imge_column="img"), "source.imge_column")
    assert "did you mean 'source.image_column'" in message


def test_unknown_prompts_key_is_rejected(tmp_path):
    message = card_error(make_card(tmp_path, CLASSIFICATION_CARD, prompts__template="templates.txt"), "prompts.template")
    assert "did you mean 'prompts.templates'" in message


# ----------------------------------------------------------------------------- errors: types and values


@pytest.mark.parametrize(
    "change,field",
    [
        ({"version": "1"}, "version"),
        ({"version": True}, "version"),
        ({"version": 1.0}, "version"),
        ({"name": 3}, "name"),
        ({"description": ["a"]}, "description"),
        ({"source__num_samples": True}, "source.num_samples"),
        ({"source__num_samples": "10"}, "source.num_samples"),
        ({"source__num_samples": 10.0}, "source.num_samples"),
        ({"source__split": 1}, "source.split"),
        ({"prompts__classnames": 1}, "prompts.classnames"),
    ],
)
def test_wrong_types_are_rejected(tmp_path, change, field):
    message = card_error(make_card(tmp_path, CLASSIFICATION_CARD, **change), field)
    assert "must be" in message


@pytest.mark.parametrize(
    "change,field",
    [
        ({"version": 0}, "version"),
        ({"version": -2}, "version"),
        ({"source__num_samples": 0}, "source.num_samples"),
        ({"type": "classification"}, "type"),
        ({"source__format": "csv"}, "source.format"),
    ],
)
def test_bad_values_are_rejected(tmp_path, change, field):
    card_error(make_card(tmp_path, CLASSIFICATION_CARD, **change), field)


def test_both_hub_and_path_is_rejected(tmp_path):
    message = card_error(make_card(tmp_path, RETRIEVAL_CARD, source__path="data"), "source")
    assert "exactly one" in message


def test_neither_hub_nor_path_is_rejected(tmp_path):
    card_error(make_card(tmp_path, CLASSIFICATION_CARD, drop=["source.path"]), "source")


def test_hub_without_revision_is_rejected(tmp_path):
    message = card_error(make_card(tmp_path, RETRIEVAL_CARD, drop=["source.revision"]), "source.revision")
    assert "pin" in message


def test_template_without_placeholder_is_rejected(tmp_path):
    message = card_error(make_card(tmp_path, CLASSIFICATION_CARD, templates="a photo of a {c}.\na photo of a {x}.\n"), "prompts.templates")
    assert "{x}" in message


def test_duplicate_class_names_are_kept(tmp_path):
    """CLIP's published ImageNet names hold duplicates ('missile', 'sunglasses'); they are data, kept as published."""
    task = load_card(make_card(tmp_path, CLASSIFICATION_CARD, classnames="cat\ndog\n  cat\n"))
    assert task.classnames == ("cat", "dog", "cat")


def test_duplicate_templates_are_rejected(tmp_path):
    message = card_error(make_card(tmp_path, CLASSIFICATION_CARD, templates="a {c}.\nthe {c}.\na {c}.\n"), "prompts.templates")
    assert "'a {c}.'" in message


def test_class_folders_must_match_the_class_count(tmp_path):
    (tmp_path / "folders.txt").write_text("n01\nn02\n")
    card_error(make_card(tmp_path, CLASSIFICATION_CARD, source__class_folders="folders.txt"), "source.class_folders")


def test_num_captions_only_in_retrieval_cards(tmp_path):
    card_error(make_card(tmp_path, CLASSIFICATION_CARD, source__num_captions=5), "source.num_captions")


def test_empty_class_name_file_is_rejected(tmp_path):
    card_error(make_card(tmp_path, CLASSIFICATION_CARD, classnames="\n  \n\n"), "prompts.classnames")


def test_missing_class_name_file_is_rejected(tmp_path):
    path = make_card(tmp_path, CLASSIFICATION_CARD, prompts__classnames="nope.txt")
    assert "no such file" in card_error(path, "prompts.classnames")


def test_class_name_file_that_is_a_folder_is_rejected(tmp_path):
    (tmp_path / "adir").mkdir()
    card_error(make_card(tmp_path, CLASSIFICATION_CARD, prompts__classnames="adir"), "prompts.classnames")


def test_non_utf8_class_name_file_is_rejected(tmp_path):
    path = make_card(tmp_path, CLASSIFICATION_CARD)
    (tmp_path / "classnames.txt").write_bytes(b"caf\xe9\n")
    card_error(path, "prompts.classnames")


@pytest.mark.parametrize("field", ["classnames", "templates"])
def test_prompt_file_outside_the_card_folder_via_dotdot_is_rejected(tmp_path, field):
    """Path traversal: a card may only read files beside it, even when the outside file exists."""
    (tmp_path / "outside.txt").write_text("a {c}\n")
    path = make_card(tmp_path / "cards", CLASSIFICATION_CARD, **{f"prompts__{field}": "../outside.txt"})
    assert "outside" in card_error(path, f"prompts.{field}")


@pytest.mark.parametrize("field", ["classnames", "templates"])
def test_prompt_file_at_an_absolute_path_elsewhere_is_rejected(tmp_path, field):
    elsewhere = tmp_path / "elsewhere" / "file.txt"
    elsewhere.parent.mkdir()
    elsewhere.write_text("a {c}\n")
    path = make_card(tmp_path / "cards", CLASSIFICATION_CARD, **{f"prompts__{field}": str(elsewhere)})
    assert "outside" in card_error(path, f"prompts.{field}")


def test_prompt_file_escaping_through_a_symlink_is_rejected(tmp_path):
    (tmp_path / "secret.txt").write_text("a\nb\n")
    path = make_card(tmp_path / "cards", CLASSIFICATION_CARD, prompts__classnames="link.txt")
    os.symlink(tmp_path / "secret.txt", tmp_path / "cards" / "link.txt")
    card_error(path, "prompts.classnames")


def test_prompt_file_in_a_subfolder_of_the_card_folder_is_allowed(tmp_path):
    folder = tmp_path / "cards"
    (folder / "classnames").mkdir(parents=True)
    (folder / "classnames" / "toy.txt").write_text("x\ny\n")
    task = load_card(make_card(folder, CLASSIFICATION_CARD, prompts__classnames="classnames/./toy.txt"))
    assert task.classnames == ("x", "y")


@pytest.mark.parametrize("metric", ["acc10", "mean_recall@1", "acc5"])  # acc5: only 3 classes
def test_main_metric_not_among_the_tasks_metrics_is_rejected(tmp_path, metric):
    card_error(make_card(tmp_path, CLASSIFICATION_CARD, main_metric=metric), "main_metric")


def test_retrieval_main_metric_must_be_a_retrieval_metric(tmp_path):
    card_error(make_card(tmp_path, RETRIEVAL_CARD, classnames=None, templates=None, main_metric="acc1"), "main_metric")


def test_label_column_in_a_retrieval_card_is_rejected(tmp_path):
    message = card_error(make_card(tmp_path, RETRIEVAL_CARD, source__label_column="label"), "source.label_column")
    assert "caption_column" in message


def test_caption_column_in_a_classification_card_is_rejected(tmp_path):
    card_error(make_card(tmp_path, CLASSIFICATION_CARD, source__caption_column="caps"), "source.caption_column")


def test_prompts_in_a_retrieval_card_is_rejected(tmp_path):
    card_error(make_card(tmp_path, RETRIEVAL_CARD, prompts__classnames="classnames.txt"), "prompts")


# ----------------------------------------------------------------------------- registry, groups, load_tasks


@pytest.fixture
def fake_registry(tmp_path, monkeypatch) -> Path:
    """A tasks folder with two cards (one whose file stem differs from its name) and a groups.toml."""
    folder = tmp_path / "registry"
    make_card(folder, CLASSIFICATION_CARD, filename="alpha.toml", name="alpha")
    make_card(folder, RETRIEVAL_CARD, filename="beta.toml", name="beta")
    make_card(folder, CLASSIFICATION_CARD, filename="gamma_cards.toml", name="gamma")
    (folder / "groups.toml").write_text('[both]\ntasks = ["alpha", "beta"]\n\n[everything]\ntasks = ["beta", "alpha", "gamma_cards"]\n'
                                        'aggregate = "size-weighted"\nincomplete = "zero"\n')
    monkeypatch.setattr(T, "tasks_dir", lambda: folder)
    return folder


def names(tasks) -> list[str]:
    return [t.name for t in tasks]


def test_registry_lists_cards_but_not_groups_toml(fake_registry):
    assert T.registry() == {
        "alpha": fake_registry / "alpha.toml",
        "beta": fake_registry / "beta.toml",
        "gamma_cards": fake_registry / "gamma_cards.toml",
    }
    assert T.groups() == {"both": T.Group("both", ("alpha", "beta")),
                          "everything": T.Group("everything", ("beta", "alpha", "gamma_cards"), "size-weighted", "zero")}


@pytest.mark.parametrize("text, problem", [
    ('both = ["alpha", "beta"]\n', "must be a table"),
    ('[both]\ntasks = ["alpha", "nope"]\n', "built-in task cards"),
    ('[both]\ntasks = []\n', "built-in task cards"),
    ('[both]\ntasks = ["alpha"]\naggregate = "median"\n', "aggregate must be one of mean, size-weighted"),
    ('[both]\ntasks = ["alpha"]\nincomplete = "skip"\n', "incomplete must be one of unranked, zero"),
    ('[both]\ntasks = ["alpha"]\nweights = 1\n', "unknown key"),
])
def test_a_bad_group_is_a_user_error_naming_it(fake_registry, text, problem):
    (fake_registry / "groups.toml").write_text(text)
    with pytest.raises(UserError, match=problem) as info:
        T.groups()
    assert "group 'both'" in str(info.value)


def test_no_groups_file_means_no_groups(fake_registry):
    (fake_registry / "groups.toml").unlink()
    assert T.groups() == {}


def test_load_tasks_by_name_and_string(fake_registry):
    assert names(load_tasks("alpha")) == ["alpha"]
    assert names(load_tasks(["beta", "alpha"])) == ["beta", "alpha"]
    assert names(load_tasks(("gamma_cards",))) == ["gamma"]  # the registry key is the file stem
    assert load_tasks("beta")[0].type == "retrieval"


def test_load_tasks_expands_groups_in_order(fake_registry):
    assert names(load_tasks(["both"])) == ["alpha", "beta"]
    assert names(load_tasks("everything")) == ["beta", "alpha", "gamma"]


def test_load_tasks_removes_duplicates_keeping_first_occurrence(fake_registry):
    assert names(load_tasks(["beta", "both", "alpha", "everything", "beta"])) == ["beta", "alpha", "gamma"]


@pytest.mark.parametrize("typo,suggestion", [("alpah", "alpha"), ("bta", "beta"), ("bothh", "both"), ("everythin", "everything")])
def test_unknown_name_suggests_a_close_task_or_group(fake_registry, typo, suggestion):
    with pytest.raises(UserError) as info:
        load_tasks([typo])
    message = str(info.value)
    assert f"'{typo}'" in message and f"did you mean '{suggestion}'" in message


def test_unknown_name_without_a_close_match_points_to_the_listing(fake_registry):
    with pytest.raises(UserError, match="vtde-bench tasks"):
        load_tasks(["qqqqqqqqqq"])


def test_load_tasks_accepts_card_paths(fake_registry, tmp_path, monkeypatch):
    outside = make_card(tmp_path / "mine", CLASSIFICATION_CARD, filename="mine.toml", name="mine")
    assert names(load_tasks([str(outside), "alpha", outside])) == ["mine", "alpha"]
    assert names(load_tasks(outside)) == ["mine"]  # guards a pathlib.Path crashing with AttributeError
    monkeypatch.chdir(tmp_path / "mine")
    assert names(load_tasks(["mine.toml"])) == ["mine"]  # a relative path
    no_suffix = tmp_path / "mine" / "card_without_suffix"
    no_suffix.write_text((tmp_path / "mine" / "mine.toml").read_text())
    assert names(load_tasks([str(no_suffix)])) == ["mine"]  # an existing file, whatever its suffix


def test_missing_card_path_in_load_tasks_is_a_user_error(fake_registry, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_tasks([str(tmp_path / "absent.toml")])


def test_bad_card_in_load_tasks_is_a_user_error(fake_registry):
    (fake_registry / "alpha.toml").write_text('name = "alpha"\n')
    with pytest.raises(UserError, match="alpha.toml"):
        load_tasks(["both"])


def test_every_built_in_card_loads_and_every_group_member_exists():
    """Guards the shipped registry (whatever it holds now): every card validates, every group names real cards."""
    cards = T.registry()
    for path in cards.values():
        load_card(path)
    for name, group in T.groups().items():
        assert set(group.tasks) <= set(cards), f"group {name} names unknown tasks"


# ----------------------------------------------------------------------------- the CLI stays light

_CHECK_HEAVY = (
    "import sys\n"
    "from vtde_bench.cli import main\n"
    "try:\n"
    "    code = main({argv!r})\n"
    "except SystemExit as e:\n"
    "    code = e.code\n"
    "if code not in (0, None):\n"
    "    sys.exit(3)\n"
    "bad = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]\n"
    "print(bad)\n"
    "sys.exit(1 if bad else 0)\n"
)


@pytest.mark.parametrize("argv", [["tasks"], ["--help"], ["run", "--help"], ["tasks", "--help"], ["cache", "info", "--cache-dir", "no-such-cache"]])
def test_listing_and_help_import_no_heavy_library(argv):
    """`vtde-bench tasks` and `--help` must stay instant: none of torch/transformers/datasets imported."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", _CHECK_HEAVY.format(argv=argv)], capture_output=True, text=True,
                          timeout=60, env=env, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("[]")


def test_comment_lines_in_prompt_files_are_skipped(tmp_path):
    """Data files name their source in '#' lines; those must never become classes or templates."""
    path = make_card(tmp_path / "c", CLASSIFICATION_CARD, classnames="# source: somewhere\ncat\ndog\nbird\n",
                     templates="# from openai/CLIP\na photo of a {c}.\n")
    task = load_card(path)
    assert task.classnames == ("cat", "dog", "bird") and task.templates == ("a photo of a {c}.",)


def test_two_different_cards_with_one_name_are_rejected(fake_registry, tmp_path):
    """Results are filed by task name: silently dropping the second card would hide it."""
    other = make_card(tmp_path / "other", CLASSIFICATION_CARD, filename="alpha.toml", name="alpha", version=2)
    with pytest.raises(UserError, match="two different cards are named 'alpha'"):
        load_tasks(["alpha", str(other)])


def test_group_naming_a_missing_card_is_a_user_error(fake_registry):
    (fake_registry / "groups.toml").write_text('broken = ["alpha", "nope"]\n')
    with pytest.raises(UserError, match="group 'broken'"):
        load_tasks(["broken"])


_CHECK_BAD_INPUT = (
    "import sys\n"
    "from vtde_bench.cli import main\n"
    "code = main({argv!r})\n"
    "print(code, [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules])\n"
)


@pytest.mark.parametrize("argv", [
    ["run", "--model", "/no/such/folder", "--tasks", "demo"],
    ["run", "--model", "tests", "--tasks", "demo"],  # a folder without config.json
    ["run", "--model", "org/name", "--tasks", "demoo"],
    ["run", "--model", "org/name", "--tasks", "demo", "--batch-size", "0"],
    # Issue #14 item 3: a read-only output was found only after all the embedding work. (Tests run as root, so
    # a path under a regular file stands in for a read-only folder.)
    ["run", "--model", "org/name", "--tasks", "demo", "--output-dir", "pyproject.toml/results"],
    ["run", "--model", "org/name", "--tasks", "demo", "--cache-dir", "README.md/cache"],
], ids=["missing-folder", "no-config", "unknown-task", "bad-option", "unwritable-output", "unwritable-cache"])
def test_run_refuses_bad_input_before_loading_any_heavy_library(argv):
    """A mistyped argument fails in a fraction of a second, not after torch and transformers load."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", _CHECK_BAD_INPUT.format(argv=argv)], capture_output=True, text=True,
                          timeout=60, env=env, cwd=Path(__file__).resolve().parent.parent)
    assert done.stdout.strip().splitlines()[-1] == "2 []", done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "error:" in done.stderr


def test_a_task_named_twice_runs_once_and_specs_pass_through():
    from vtde_bench.api import _resolve_tasks

    names = [t.name for t in _resolve_tasks(["demo", "shapes-classification"])]
    assert names == ["shapes-classification", "shapes-retrieval"]
    (spec,) = load_tasks("shapes-classification")
    card = tasks_dir() / "shapes-retrieval.toml"
    assert [t.name for t in _resolve_tasks([spec, card, "shapes-classification"])] == ["shapes-classification", "shapes-retrieval"]
