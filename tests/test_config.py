"""The configuration: one set of defaults, presets that merge over it, a schema with none."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml
from conftest import (
    DEFAULTS,
    PRESET_WEIGHTS,
    REPO,
    TINY_CONFIG,
    differences,
    merged,
    put_hub_file,
    snakemake,
)

from moclip.cli import main
from moclip.clip.prompts import PROMPT_SETS
from moclip.clip.stream import EMBEDDING_DTYPES, INTERPOLATIONS
from moclip.dataset.demo import APPEARANCES, MOTIONS, DemoSpec
from moclip.dataset.formats import FORMATS
from moclip.dataset.videos import SPLITS
from moclip.heads import NORMALIZATIONS, HeadSettings
from moclip.mv.data import AUGMENT_UNITS, EVAL_CROPS, OPTIMIZERS, MVSettings
from moclip.runtime import PRECISIONS
from moclip.video.cache import COMPRESSION, ENCODINGS, FrameStorage
from moclip.video.codec import DecodeSettings
from moclip.video.encode import REENCODE
from moclip.workflow import plan
from moclip.workflow.checks import check_models
from moclip.workflow.config import ConfigError, check_config, key_line, load_config, load_yaml, ordered_like

SCHEMA = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
PRESETS = ("ucf101.yaml", "ucf101-paper.yaml")  # our recommended recipe, the authors'


def _walk(schema: dict, path: str = ""):
    yield path, schema
    for k, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{k}" if path else k)


def test_schema_holds_no_defaults_and_requires_every_key():
    for path, node in _walk(SCHEMA):
        assert "default" not in node, path
        if "properties" in node:
            assert sorted(node["required"]) == sorted(node["properties"]), path
            assert node["additionalProperties"] is False, path


@pytest.mark.parametrize("preset", sorted(p.name for p in (REPO / "config").glob("*.yaml")))
def test_defaults_and_every_preset_merged_over_them_are_valid(preset):
    files = [REPO / "config.yaml", REPO / "config" / preset]
    cfg = load_config(files)
    assert cfg == merged(DEFAULTS, yaml.safe_load(files[1].read_text()))
    check_config(cfg, SCHEMA, files)
    check_models(cfg, files)  # the presets' model names are in open_clip's and timm's registries


def test_a_key_missing_after_the_merge_is_named():
    cfg = merged(DEFAULTS, {})
    del cfg["mvnet"]["max_displacement"]
    with pytest.raises(ConfigError, match=r"^mvnet: missing key 'max_displacement'"):
        check_config(cfg, SCHEMA)


def _problems(tmp_path, text: str) -> list[str]:
    user = tmp_path / "my config.yaml"
    user.write_text(text)
    files = [REPO / "config.yaml", user]
    with pytest.raises(ConfigError) as e:
        cfg = load_config(files)
        check_config(cfg, SCHEMA, files)
        check_models(cfg, files)
    return str(e.value).splitlines()


def test_each_problem_is_one_line_with_file_line_and_the_nearest_name(tmp_path):
    f = tmp_path / "my config.yaml"
    lines = _problems(
        tmp_path, "seed: 1\nmvnet:\n  lrr: 0.1\n  optimizer: adamm\n  epochs: 0\ndataset:\n  shards: autoo\n"
    )
    assert lines[0].startswith(f"{f}:3: unknown key 'mvnet.lrr' (did you mean 'lr'?); valid keys here: arch, ")
    assert lines[1:] == [
        f"{f}:4: mvnet.optimizer: 'adamm' is not one of ['adam', 'adamw', 'sgd'] (did you mean 'adam'?)",
        f"{f}:5: mvnet.epochs: 0 is less than the minimum of 1",
        f"{f}:7: dataset.shards: 'autoo' is not an integer >= 1 or 'auto' (did you mean 'auto'?)",
    ]
    assert _problems(tmp_path, "mvnett: {}\n")[0].startswith(f"{f}:1: unknown key 'mvnett' (did you mean 'mvnet'?)")


def test_broken_yaml_names_file_line_and_column(tmp_path):
    f = tmp_path / "my config.yaml"
    assert _problems(tmp_path, "mvnet:\n  lr: 0.1\n   epochs: 3\n") == [
        f"{f}:3:10: not valid YAML: mapping values are not allowed here"
    ]
    f.write_text("- a list\n")
    with pytest.raises(ConfigError, match="a mapping of keys, not a list"):
        load_yaml(f)


def test_unknown_model_names_are_named_with_their_file_and_line(tmp_path):
    f = tmp_path / "my config.yaml"
    assert _problems(tmp_path, "clip:\n  model: ViT-B-33\n") == [
        f"{f}:2: clip.model: unknown open_clip architecture 'ViT-B-33' (did you mean 'ViT-B-32'?)"
    ]
    tag = _problems(tmp_path, "clip:\n  model: ViT-B-32\n  pretrained: opnai\n")
    assert tag[0].startswith(f"{f}:3: clip.pretrained: 'opnai' is neither a file nor a pretrained tag of ViT-B-32 ")
    assert "(did you mean 'openai'?)" in tag[0]
    assert _problems(tmp_path, "mvnet:\n  arch: efficientnet_b00\n") == [
        f"{f}:2: mvnet.arch: 'efficientnet_b00' is neither tiny nor a timm architecture "
        "(did you mean 'efficientnet_b0'?)"
    ]
    weights = _problems(tmp_path, "mvnet:\n  arch: efficientnet_b0\n  pretrained: ra_in1kk\n")
    assert weights[0].startswith(f"{f}:3: mvnet.pretrained: 'ra_in1kk' is neither a file nor a timm tag of ")
    assert "(did you mean 'ra_in1k'?)" in weights[0]
    assert _problems(tmp_path, "mvnet:\n  pretrained: true\n") == [
        f"{f}:2: mvnet.pretrained: the tiny network has no pretrained weights (set false, or a timm arch)"
    ]


def test_the_recipe_table_lists_every_difference_between_the_ucf101_presets():
    """docs/ucf101.md's recipe table has one row a setting where config/ucf101-paper.yaml and
    config/ucf101.yaml differ: a difference added to a preset without a row fails here."""
    ours, paper = (load_config([REPO / "config.yaml", REPO / "config" / f]) for f in PRESETS)
    doc = (REPO / "docs" / "ucf101.md").read_text()
    table = doc.split("<!-- recipe-table")[1].split("<!-- /recipe-table -->")[0]
    rows = re.findall(r"^\| ((?:`[a-z_.]+`(?:, )?)+) \|", table, re.M)
    tabled = {k for row in rows for k in re.findall(r"`([a-z_.]+)`", row)}
    assert tabled == set(differences(ours, paper)) - {"results"}


def test_key_line_follows_nested_keys(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("a:\n  b: 1\n  c:\n    d: 2\n")
    assert key_line(f, ["a", "c", "d"]) == 4 and key_line(f, ["a", "b"]) == 2 and key_line(f, ["a", "x"]) is None


@pytest.mark.workflow
def test_the_workflow_stops_at_parse_time_in_a_few_lines(tmp_path):
    """`snakemake -n` itself: a typo'd key and a list entry naming a missing video stop the
    run before any job, in a few lines naming file and line."""
    out = snakemake(tmp_path / "typo", merged(TINY_CONFIG, {"mvnet": {"lrr": 1}}), "-n", check=False)
    cfg = tmp_path / "typo" / "test-config.yaml"
    assert out.returncode != 0
    said = out.stdout + out.stderr  # Snakemake prints its errors on stdout
    assert f"{cfg}:{key_line(cfg, ['mvnet', 'lrr'])}: unknown key 'mvnet.lrr' (did you mean 'lr'?)" in said
    assert len(said.splitlines()) < 10, said
    assert "WorkflowError" not in said and 'File "' not in said, said  # no wrapper, no traceback


@pytest.mark.workflow
def test_a_missing_dataset_path_is_one_line_from_the_users_file_in_both_checks(tmp_path, capsys):
    """A new UCF101 user's first error, as they would meet it: the recipe and a paths file
    whose dataset.videos does not exist. `moclip check-config` and `snakemake -n` print the
    same line, naming the paths file and its line, without Snakemake's WorkflowError wrapper
    or a traceback into the project's code."""
    paths = tmp_path / "my-paths.yaml"
    paths.write_text(f"dataset:\n  videos: {tmp_path / 'UCF-101'}\n  lists: {tmp_path}\n")
    line = f"{paths}:2: dataset.videos: '{tmp_path / 'UCF-101'}' is not a directory"
    recipe = str(REPO / "config" / "ucf101.yaml")
    assert main(["check-config", recipe, str(paths)]) == 2
    assert capsys.readouterr().err == f"moclip check-config: error: {line}\n"
    out = snakemake(tmp_path / "run", {}, "-n", "--configfile", recipe, str(paths), check=False)
    said = out.stdout + out.stderr
    assert out.returncode == 1 and line in said.splitlines(), said
    assert "WorkflowError" not in said and 'File "' not in said and "Traceback" not in said, said
    assert [x for x in said.splitlines() if "UCF-101" in x] == [line]  # printed once


@pytest.mark.workflow
@pytest.mark.parametrize("case", ["mv_model", "lists", "twice"])
def test_other_path_errors_are_one_line_from_the_users_file_in_both_checks(tmp_path, case, capsys):
    """The other settings a parse checks, as the missing dataset path: a folder run's given
    MV network that is not a file, split lists without classInd.txt (the error names the list
    file and the setting that named the folder) and a key given twice. Each is one line
    naming the user's file and the setting's line, the same from `moclip check-config` and
    `snakemake -n`, without a wrapper or a traceback."""
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.avi").touch()
    (tmp_path / "lists").mkdir()
    paths = tmp_path / "my-paths.yaml"
    text, problem = {
        "mv_model": (
            f"dataset:\n  format: folder\n  videos: {tmp_path / 'videos'}\n"
            f"features:\n  mv_model: {tmp_path / 'mv.pt'}\n",
            f"5: features.mv_model: '{tmp_path / 'mv.pt'}' is not a file",
        ),
        "lists": (
            f"dataset:\n  videos: {tmp_path / 'videos'}\n  lists: {tmp_path / 'lists'}\n",
            f"3: dataset.lists: {tmp_path / 'lists' / 'classInd.txt'}: split list not found",
        ),
        "twice": ("seed: 1\nseed: 2\n", "2: seed: key given twice, at lines 1 and 2 (YAML keeps the last)"),
    }[case]
    paths.write_text(text)
    line = f"{paths}:{problem}"
    assert main(["check-config", str(paths)]) == 2
    assert capsys.readouterr().err == f"moclip check-config: error: {line}\n"
    out = snakemake(tmp_path / "run", {}, "-n", "--configfile", str(paths), check=False)
    said = out.stdout + out.stderr
    assert out.returncode == 1 and line in said.splitlines(), said
    assert "WorkflowError" not in said and 'File "' not in said and "Traceback" not in said, said


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("heads:\n  lr: .inf\n", 2, "heads.lr"),
        ("mvnet:\n  epochs: 3\n  lr: -.Inf\n", 3, "mvnet.lr"),
        ("mvnet:\n  lr: .nan\n", 2, "mvnet.lr"),
        ("mvnet:\n  milestones: [2, .NaN]\n", 2, "mvnet.milestones"),
        ("experiments:\n  a:\n    heads:\n      lr: !!float .inf\n", 4, "experiments.a.heads.lr"),
    ],
)
def test_nan_and_infinity_are_refused_with_file_line_and_key(tmp_path, text, line, key):
    """YAML's .inf and .nan are floats: they pass the schema's number type and its minimum."""
    f = tmp_path / "my config.yaml"
    (problem,) = _problems(tmp_path, text)
    assert re.fullmatch(
        rf"{re.escape(f'{f}:{line}: {key}: ')}\S+ is not a number a setting can take \(NaN or infinity\)", problem
    )


def test_a_non_finite_value_from_elsewhere_is_refused_by_the_check():
    """A value that no file set (a --config override reads 'inf' as a float) is refused too."""
    with pytest.raises(ConfigError, match=r"^heads\.lr: inf is not a number a setting can take"):
        check_config(merged(DEFAULTS, {"heads": {"lr": float("inf")}}), SCHEMA)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "heads:\n  lr: 0.1\nmvnet:\n  epochs: 3\nheads:\n  epochs: 2\n",
            5,
            "heads: key given twice, at lines 1 and 5",
        ),
        ("mvnet:\n  epochs: 3\n  lr: 0.1\n  epochs: 4\n", 4, "mvnet.epochs: key given twice, at lines 2 and 4"),
        (
            "experiments:\n  a:\n    heads: {lr: 0.1, lr: 0.2}\n",
            3,
            "experiments.a.heads.lr: key given twice, at lines 3 and 3",
        ),
    ],
)
def test_a_key_given_twice_names_both_lines(tmp_path, text, line, message):
    f = tmp_path / "my config.yaml"
    assert _problems(tmp_path, text) == [f"{f}:{line}: {message} (YAML keeps the last)"]


@pytest.mark.parametrize("text", ["", "null\n", "# nothing yet\n"])
def test_a_file_that_sets_nothing_is_an_error_as_snakemake_makes_it(tmp_path, text):
    """Snakemake refuses an empty or null --configfile; check-config says the same."""
    f = tmp_path / "my config.yaml"
    assert _problems(tmp_path, text) == [
        f"{f}: the file sets nothing (empty or null), which Snakemake refuses as a --configfile: "
        "give at least one key, or write {} for none"
    ]
    f.write_text("{}\n")
    assert load_config([REPO / "config.yaml", f]) == DEFAULTS


@pytest.mark.workflow
def test_the_workflow_refuses_a_key_given_twice_and_infinity_at_parse_time(tmp_path):
    """`snakemake -n`: Snakemake's own reading keeps the last of two keys and takes .inf; the
    workflow refuses both before any job, naming file and line. An empty config file stops it
    (Snakemake's own message), as check-config is refused."""
    cfg = tmp_path / "mine.yaml"
    tiny = (REPO / "config" / "test.yaml").read_text()
    heads = key_line(REPO / "config" / "test.yaml", ["heads"])
    for text, said in [
        (
            tiny + "heads:\n  lr: 0.1\n",
            f"{cfg}:{len(tiny.splitlines()) + 1}: heads: key given twice, at lines {heads} and ",
        ),
        (
            tiny + "  lr: .inf\n",
            f"{cfg}:{len(tiny.splitlines()) + 1}: heads.lr: .inf is not a number a setting can take",
        ),
        ("", "Config file must be given as JSON or YAML with keys at top level"),
    ]:
        cfg.write_text(text)
        out = snakemake(tmp_path, cfg, "-n", cores=None, check=False)  # the file as written, not a dict
        assert out.returncode != 0 and said in out.stdout + out.stderr, out.stdout + out.stderr
        assert len((out.stdout + out.stderr).splitlines()) < 10


@pytest.mark.workflow
def test_a_listed_video_that_is_missing_stops_a_dry_run(tiny_demo, tmp_path):
    videos, lists = tiny_demo
    own = tmp_path / "lists"
    own.mkdir()
    for f in lists.iterdir():
        (own / f.name).write_bytes(f.read_bytes())
    with open(own / "testlist02.txt", "ab") as f:
        f.write(b"BallFall/v_BallFall_g09_c07.avi\r\n")
    n = len((own / "testlist02.txt").read_bytes().splitlines())
    config = merged(TINY_CONFIG, {"dataset": {"videos": str(videos), "lists": str(own)}})
    out = snakemake(tmp_path / "run", config, "-n", check=False)
    assert out.returncode != 0
    missing = videos / "BallFall" / "v_BallFall_g09_c07.avi"
    assert f"{own / 'testlist02.txt'}:{n}: video {missing} does not exist" in out.stdout + out.stderr


def test_settings_objects_take_their_config_sections():
    mv = MVSettings.from_config({**{k: v for k, v in DEFAULTS["mvnet"].items() if k != "device"}, "seed": 0})
    assert mv.milestones == tuple(DEFAULTS["mvnet"]["milestones"]) and mv.max_displacement == 20.0
    HeadSettings.from_config({k: v for k, v in DEFAULTS["heads"].items() if k != "seeds"})
    with pytest.raises(ValueError, match=r"DecodeSettings: unknown setting\(s\) \['mv_cel'\]"):
        DecodeSettings.from_config({"mv_cel": 8})


@pytest.mark.workflow
def test_results_root_keeps_runs_apart(tmp_path):
    """``results`` moves every output (logs and benchmarks too): the demo's results/ and a
    preset's own root coexist in one working directory."""
    out = snakemake(tmp_path, merged(TINY_CONFIG, {"results": "results-other"}), "-n")
    paths = re.findall(r"^\s+(?:output|log|benchmark): (.+)$", out.stdout, re.M)
    files = [f for line in paths for f in line.split(", ") if not f.startswith("... ")]  # a long list's count
    assert len(files) > 30 and all(f.startswith("results-other/") for f in files), files
    assert yaml.safe_load((REPO / "config" / "ucf101.yaml").read_text())["results"] != DEFAULTS["results"]


SETTINGS = {
    "heads": HeadSettings,
    "mvnet": MVSettings,
    "decode": DecodeSettings,
    "demo": DemoSpec,
    "frames": FrameStorage,
}


@pytest.mark.parametrize("section", sorted(SETTINGS))
def test_a_settings_class_built_without_arguments_is_the_workflows(section):
    """Each value is written once, in config.yaml: a settings class's defaults are read from
    it, so ``HeadSettings()`` in a test or benchmark trains the workflow's head. A default
    written into the class instead fails here as soon as it differs."""
    cls = SETTINGS[section]
    built = dataclasses.asdict(cls())
    for key, value in DEFAULTS[section].items():
        if key in built:
            assert built[key] == (tuple(value) if isinstance(value, list) else value), f"{section}.{key}"
    assert dataclasses.asdict(cls.from_config({k: v for k, v in DEFAULTS[section].items() if k in built})) == built


def test_decode_settings_built_without_arguments_are_the_workflows_caches():
    """The cache's frame settings come from config.yaml's ``frames`` (as the workflow's params
    pass them, moclip.workflow.plan.decode_settings): ``DecodeSettings()`` writes the workflow's cache."""
    assert DecodeSettings.from_config(plan.decode_settings(DEFAULTS)) == DecodeSettings()


def test_every_choice_the_schema_allows_is_the_librarys_own_list():
    """The schema's enums are the library's constants (the code that acts on the value): a
    choice added to one and not the other fails here."""
    props = {path: node for path, node in _walk(SCHEMA)}
    library = {
        "dataset.format": FORMATS,
        "dataset.reencode": ("none", *REENCODE),
        "demo.appearances": tuple(APPEARANCES),
        "demo.motions": MOTIONS,
        "clip.precision": PRECISIONS,
        "mvnet.precision": PRECISIONS,
        "clip.dtype": EMBEDDING_DTYPES,
        "clip.interpolation": INTERPOLATIONS,
        "mvnet.eval_crops": EVAL_CROPS,
        "mvnet.optimizer": OPTIMIZERS,
        "mvnet.augment_unit": AUGMENT_UNITS,
        "heads.normalize": NORMALIZATIONS,
        "cache.compression": tuple(COMPRESSION),
        "frames.encoding": ENCODINGS,
    }
    enum = lambda node: tuple(node.get("enum") or node["items"]["enum"])  # noqa: E731
    for path, constant in library.items():
        assert enum(props[path]) == tuple(constant), path
    assert tuple(props["dataset.splits"]["items"]["enum"]) == SPLITS
    assert tuple(props["clip.prompts"]["anyOf"][0]["enum"]) == PROMPT_SETS
    found = {p for p, n in props.items() if "enum" in n or "enum" in n.get("items", {}) or "anyOf" in n}
    assert found == {*library, "dataset.splits", "clip.prompts"}, found - {*library, "dataset.splits", "clip.prompts"}


def test_pretrained_weights_are_checked_before_the_run(tmp_path, monkeypatch):
    """Each pretrained tag's weights must be in the Hugging Face cache or fetchable: offline
    and not cached, one line a tag names the preset's file and line, the model, the cache,
    and the command that gets the file; once the files are in the cache, it passes."""
    from huggingface_hub import constants

    from moclip.workflow.checks import check_weights

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    files = [REPO / "config.yaml", REPO / "config" / "ucf101-paper.yaml"]
    cfg = load_config(files)
    with pytest.raises(ConfigError) as e:
        check_weights(cfg, files)
    lines = str(e.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{files[1]}:{key_line(files[1], ['clip', 'pretrained'])}: clip.pretrained: ")
    assert "the weights of ViT-B-32 openai are not in the Hugging Face cache" in lines[0]
    assert f"({tmp_path / 'hub'}) and cannot be fetched (HF_HUB_OFFLINE is set)" in lines[0]
    assert "`hf download timm/vit_base_patch32_clip_224.openai open_clip_model.safetensors`" in lines[0]
    assert "mvnet.pretrained: the weights of efficientnet_b0 (ImageNet)" in lines[1]
    for repo, filename in PRESET_WEIGHTS:
        put_hub_file(tmp_path / "hub", repo, filename)
    check_weights(cfg, files)
    check_weights(DEFAULTS)  # random weights and the tiny network: nothing to fetch


def test_ordered_like_puts_keys_in_the_defaults_order_and_keeps_extra_keys_in_theirs():
    reference = {"a": 1, "b": {"x": 1, "y": 2}, "experiments": {}}
    config = {"experiments": {"z": {}, "m": {}}, "b": {"y": 3, "x": 4}, "a": 5}
    out = ordered_like(config, reference)
    assert out == config and list(out) == ["a", "b", "experiments"]
    assert list(out["b"]) == ["x", "y"] and list(out["experiments"]) == ["z", "m"]  # names keep their order


def test_a_merged_config_shares_nothing_with_its_parts():
    base, change = {"a": {"b": [1], "c": 2}}, {"a": {"c": 3}, "d": {"e": 4}}
    out = merged(base, change)
    assert out == {"a": {"b": [1], "c": 3}, "d": {"e": 4}}
    out["a"]["b"].append(2)
    out["d"]["e"] = 5
    assert base == {"a": {"b": [1], "c": 2}} and change == {"a": {"c": 3}, "d": {"e": 4}}


BRACED = "res {wild}"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (f"results: '{BRACED}'\n", "results"),
        ("results: 'res {}'\n", "results"),  # an output path also goes through expand(): no brace at all
        ("results: 'res {'\n", "results"),
        (f"dataset:\n  format: csv\n  videos: 'data/{BRACED}'\n", "dataset.videos"),
        (f"dataset:\n  format: csv\n  lists: '{BRACED}.csv'\n", "dataset.lists"),
        (f"dataset:\n  format: csv\n  classes: '{BRACED}.txt'\n", "dataset.classes"),
        (f"clip:\n  prompts: '{BRACED}.json'\n", "clip.prompts"),
        (f"features:\n  mv_model: '{BRACED}/model.pt'\n", "features.mv_model"),
    ],
)
def test_a_path_snakemake_would_read_as_a_wildcard_is_refused_naming_file_line_and_key(tmp_path, text, key):
    """Snakemake fills ``{name}`` in any path from a job's wildcards and has no escape for
    it: such a path ended the run with a WildcardError naming neither file nor key."""
    f = tmp_path / "my config.yaml"
    (problem,) = _problems(tmp_path, text)
    line = len(text.splitlines())
    assert problem.startswith(f"{f}:{line}: {key}: ")
    assert re.search(
        r"holds (\{wild\}|\{\}|\{), which Snakemake reads as a wildcard in a path \(braces have no escape there\): "
        "rename it$",
        problem,
    )


def test_an_experiments_braced_path_is_refused_naming_the_experiment_file_and_line(tmp_path):
    from moclip.workflow.experiments import experiment_configs

    f = tmp_path / "my config.yaml"
    f.write_text(f"experiments:\n  a:\n    clip:\n      prompts: '{BRACED}.yaml'\n")
    files = [REPO / "config.yaml", f]
    config = load_config(files)
    check_config(config, SCHEMA, files)
    with pytest.raises(ConfigError) as e:
        experiment_configs(config, SCHEMA, files)
    assert str(e.value).startswith(f"experiment 'a': {f}:4: clip.prompts: 'res {{wild}}.yaml' holds {{wild}}, ")


def test_the_wildcard_test_is_snakemakes_own():
    """moclip copies Snakemake's pattern (it never imports Snakemake): they agree on braces
    that are a wildcard and on those Snakemake leaves alone, which stay allowed."""
    from snakemake_interface_storage_plugins.io import WILDCARD_REGEX

    from moclip.io import wildcard_in

    samples = [
        "a {x} b",
        "{{x}}",
        "{1}",
        "{ x }",
        "{x,y}",
        "{x,a{3,5}}",
        "{a.b}",
        "{",
        "}",
        "{}",
        "{a-b}",
        "}{x",
        "[x]*?$%;',\\",
    ]
    for s in samples:
        m = WILDCARD_REGEX.search(s)
        assert wildcard_in(s) == (m.group(0) if m else None), s
    assert [s for s in samples if wildcard_in(s) is None] == ["{", "}", "{}", "{a-b}", "}{x", "[x]*?$%;',\\"]


def test_a_prompt_file_naming_a_braced_file_is_refused_naming_the_prompt_file(tmp_path):
    from moclip.workflow.checks import check_run

    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("templates: 'tmpl {wild}.yaml'\n")
    (tmp_path / "tmpl {wild}.yaml").write_text("['a photo of {}']\n")
    user = tmp_path / "my config.yaml"
    user.write_text(f"clip:\n  prompts: '{prompts}'\n")
    files = [REPO / "config.yaml", user]
    config = load_config(files)
    check_config(config, SCHEMA, files)
    with pytest.raises(ConfigError) as e:
        check_run(config, files, None, None)
    assert str(e.value) == (
        f"{user}:2: clip.prompts: {prompts}: {str(tmp_path / 'tmpl {wild}.yaml')!r} holds {{wild}}, which Snakemake "
        "reads as a wildcard in a path (braces have no escape there): rename it"
    )


def _command_line(*entries: str):
    """--config values exactly as Snakemake parses them."""
    from snakemake.cli import parse_config

    from moclip.workflow.config import CommandLine

    return CommandLine(parse_config(list(entries)))


def test_a_nested_config_override_is_merged_into_its_block_with_yaml_types(tmp_path):
    """Snakemake reads ``heads='{"lr": 0.01}'`` with YAML's base loader (every leaf a string)
    and merges it into the block: the check refused '0.01'. Typed, it is a number, the
    block's other keys stay the files', and a leaf meant as text stays text."""
    user = tmp_path / "mine.yaml"
    user.write_text("heads:\n  epochs: 7\n")
    over = _command_line(
        'heads={"lr": 0.01, "seeds": [3, 4], "frame_norm": false}',
        "clip={templates: ['photo: {}', 'a {}'], prompts: phrases}",
        "seed=5",
    )
    assert over["heads"]["lr"] == "0.01"  # what Snakemake gives
    files = [REPO / "config.yaml", user, over]
    config = load_config(files)
    check_config(config, SCHEMA, files)
    assert config["heads"] == {**DEFAULTS["heads"], "epochs": 7, "lr": 0.01, "seeds": [3, 4], "frame_norm": False}
    assert config["clip"]["templates"] == ["photo: {}", "a {}"] and config["clip"]["prompts"] == "phrases"
    assert config["seed"] == 5 and _command_line("mvnet={lr: 1e-3}")["mvnet"]["lr"] == "1e-3"
    assert load_config([REPO / "config.yaml", _command_line("mvnet={lr: 1e-3}")])["mvnet"]["lr"] == 0.001


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("seed=abc", "--config: seed: 'abc' is not of type 'integer'"),
        ('heads={"epochs": 0}', "--config: heads.epochs: 0 is less than the minimum of 1"),
        ('heads={"lrr": 0.1}', "--config: unknown key 'heads.lrr' (did you mean 'lr'?); valid keys here: hidden, "),
        ("mvnet={lr: .inf}", "--config: mvnet.lr: inf is not a number a setting can take (NaN or infinity)"),
        ("results=out {x}", "--config: results: 'out {x}' holds {x}, which Snakemake reads as a wildcard"),
        ('heads={"lr": 0.01', "--config: heads: '{\"lr\": 0.01' is not of type 'object'"),
    ],
)
def test_errors_about_a_config_override_name_config_and_the_key_not_a_file(tmp_path, entry, problem):
    """config.yaml sets every key: an error about a --config value pointed at its line."""
    files = [REPO / "config.yaml", _command_line(entry)]
    with pytest.raises(ConfigError) as e:
        check_config(load_config(files), SCHEMA, files)
    (line,) = str(e.value).splitlines()
    assert line.startswith(problem) and "config.yaml" not in line
