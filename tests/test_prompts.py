"""Prompt sets: CLIP's UCF101 templates, the phrase templates, a phrase for every UCF101 class."""

from __future__ import annotations

import json

import pytest

from moclip.clip.prompts import (
    CLIP_UCF101_TEMPLATES,
    PHRASE_TEMPLATES,
    PROMPT_SETS,
    UCF101_PHRASES,
    PromptFileError,
    class_prompt_name,
    class_prompts,
    missing_phrases,
    prompt_files,
    prompt_set,
)

# UCF101's 101 classes in classInd.txt order (case-insensitive: Hammering before HammerThrow).
UCF101_CLASSES = [
    "ApplyEyeMakeup",
    "ApplyLipstick",
    "Archery",
    "BabyCrawling",
    "BalanceBeam",
    "BandMarching",
    "BaseballPitch",
    "Basketball",
    "BasketballDunk",
    "BenchPress",
    "Biking",
    "Billiards",
    "BlowDryHair",
    "BlowingCandles",
    "BodyWeightSquats",
    "Bowling",
    "BoxingPunchingBag",
    "BoxingSpeedBag",
    "BreastStroke",
    "BrushingTeeth",
    "CleanAndJerk",
    "CliffDiving",
    "CricketBowling",
    "CricketShot",
    "CuttingInKitchen",
    "Diving",
    "Drumming",
    "Fencing",
    "FieldHockeyPenalty",
    "FloorGymnastics",
    "FrisbeeCatch",
    "FrontCrawl",
    "GolfSwing",
    "Haircut",
    "Hammering",
    "HammerThrow",
    "HandstandPushups",
    "HandstandWalking",
    "HeadMassage",
    "HighJump",
    "HorseRace",
    "HorseRiding",
    "HulaHoop",
    "IceDancing",
    "JavelinThrow",
    "JugglingBalls",
    "JumpingJack",
    "JumpRope",
    "Kayaking",
    "Knitting",
    "LongJump",
    "Lunges",
    "MilitaryParade",
    "Mixing",
    "MoppingFloor",
    "Nunchucks",
    "ParallelBars",
    "PizzaTossing",
    "PlayingCello",
    "PlayingDaf",
    "PlayingDhol",
    "PlayingFlute",
    "PlayingGuitar",
    "PlayingPiano",
    "PlayingSitar",
    "PlayingTabla",
    "PlayingViolin",
    "PoleVault",
    "PommelHorse",
    "PullUps",
    "Punch",
    "PushUps",
    "Rafting",
    "RockClimbingIndoor",
    "RopeClimbing",
    "Rowing",
    "SalsaSpin",
    "ShavingBeard",
    "Shotput",
    "SkateBoarding",
    "Skiing",
    "Skijet",
    "SkyDiving",
    "SoccerJuggling",
    "SoccerPenalty",
    "StillRings",
    "SumoWrestling",
    "Surfing",
    "Swing",
    "TableTennisShot",
    "TaiChi",
    "TennisSwing",
    "ThrowDiscus",
    "TrampolineJumping",
    "Typing",
    "UnevenBars",
    "VolleyballSpiking",
    "WalkingWithDog",
    "WallPushups",
    "WritingOnBoard",
    "YoYo",
]


def test_class_list_is_ucf101():
    assert len(UCF101_CLASSES) == len(set(UCF101_CLASSES)) == 101
    assert sorted(UCF101_CLASSES, key=str.lower) == UCF101_CLASSES


def test_every_ucf101_class_has_one_or_two_phrases():
    assert sorted(UCF101_PHRASES) == sorted(UCF101_CLASSES)
    seen: dict[str, str] = {}
    for name, phrases in UCF101_PHRASES.items():
        assert isinstance(phrases, tuple) and 1 <= len(phrases) <= 2, name
        assert len(set(phrases)) == len(phrases), name
        for p in phrases:
            assert p and p == p.strip() and "  " not in p, (name, p)
            assert p[0].islower() and "{" not in p and "}" not in p and not p.endswith("."), (name, p)
            assert seen.setdefault(p, name) == name, f"{p!r} describes both {seen[p]} and {name}"


def test_phrase_templates():
    assert len(PHRASE_TEMPLATES) == len(set(PHRASE_TEMPLATES)) == 12
    for t in PHRASE_TEMPLATES:
        assert t.count("{}") == 1 and t.count("{") == t.count("}") == 1, t
        assert t == t.strip() and "  " not in t, t


def test_clip_ucf101_templates():
    assert len(CLIP_UCF101_TEMPLATES) == len(set(CLIP_UCF101_TEMPLATES)) == 48
    assert all(t.count("{}") == 1 and t.endswith("{}.") for t in CLIP_UCF101_TEMPLATES)
    assert CLIP_UCF101_TEMPLATES[0] == "a photo of a person {}."
    assert CLIP_UCF101_TEMPLATES[-1] == "a demonstration of the person practicing {}."
    assert "a video of the person doing {}." in CLIP_UCF101_TEMPLATES


def test_all_ucf101_class_names_split_into_words():
    assert len(UCF101_CLASSES) == 101
    words = {c: class_prompt_name(c) for c in UCF101_CLASSES}
    for c, w in words.items():
        assert w == w.lower() and w.strip() == w and "  " not in w, (c, w)
        assert w.replace(" ", "").replace("-", "") == c.lower() or c in ("Skijet", "Shotput", "YoYo"), (c, w)
    assert words["ApplyEyeMakeup"] == "apply eye makeup"
    assert words["CleanAndJerk"] == "clean and jerk"
    assert words["TableTennisShot"] == "table tennis shot"
    assert words["HandstandPushups"] == "handstand push-ups"
    assert words["YoYo"] == "yo-yo" and words["Skijet"] == "jet ski"
    assert len(set(words.values())) == 101


def test_class_prompt_name():
    assert class_prompt_name("ApplyEyeMakeup") == "apply eye makeup"
    assert class_prompt_name("CleanAndJerk") == "clean and jerk"
    assert class_prompt_name("YoYo") == "yo-yo"
    assert class_prompt_name("Skijet") == "jet ski"
    assert class_prompt_name("BallRise") == "ball rise"
    assert class_prompt_name("lowercase") == "lowercase"


def test_clip_ucf101_prompts():
    p = class_prompts("ApplyEyeMakeup")
    assert p == class_prompts("ApplyEyeMakeup", "clip-ucf101")
    assert len(p) == len(set(p)) == 48
    assert p[0] == "a photo of a person apply eye makeup."
    assert all("apply eye makeup" in s and "{" not in s for s in p)
    # the hand-written phrases play no part in this set
    assert not any("applying" in s for s in p)


@pytest.mark.parametrize("name", ["PlayingDaf", "PlayingCello", "BabyCrawling", "YoYo"])
def test_phrase_prompts(name):
    phrases = UCF101_PHRASES[name]
    p = class_prompts(name, "phrases")
    assert len(p) == len(set(p)) == 12 * len(phrases)
    assert set(p) == {t.format(ph) for t in PHRASE_TEMPLATES for ph in phrases}
    assert all(s.endswith(".") and "  " not in s and "{" not in s for s in p)


def test_phrase_prompts_of_every_class():
    for name in UCF101_CLASSES:
        assert len(class_prompts(name, "phrases")) == 12 * len(UCF101_PHRASES[name]), name
        assert len(class_prompts(name)) == 48, name


def test_phrase_prompts_fall_back_to_class_words():
    p = class_prompts("BallRise", "phrases")
    assert p == [t.format("ball rise") for t in PHRASE_TEMPLATES]
    assert "a video of ball rise." in p


def test_custom_templates_replace_the_default():
    assert class_prompts("PlayingDaf", templates=["{}"]) == ["playing daf"]
    assert class_prompts("PlayingDaf", "phrases", templates=("{}", "a video of {}.")) == [
        "playing the daf",
        "a video of playing the daf.",
        "playing a frame drum",
        "a video of playing a frame drum.",
    ]
    assert class_prompts("BallRise", "phrases", templates=["x {} y"]) == ["x ball rise y"]


@pytest.mark.parametrize("templates", [[], ["no placeholder"], ["a {}.", "missing"]])
def test_bad_templates_raise(templates):
    with pytest.raises(ValueError, match="templates"):
        class_prompts("PlayingDaf", templates=templates)


def test_unknown_prompt_set_raises():
    assert PROMPT_SETS == ("clip-ucf101", "phrases")
    with pytest.raises(ValueError, match="'kinetics'") as e:
        class_prompts("PlayingDaf", "kinetics")
    assert all(s in str(e.value) for s in PROMPT_SETS)


def test_missing_phrases():
    assert missing_phrases(UCF101_CLASSES) == []
    assert missing_phrases(["BallRise", "PlayingDaf", "BallFall", "YoYo"]) == ["BallRise", "BallFall"]
    assert missing_phrases(iter(["playingdaf"])) == ["playingdaf"]
    assert missing_phrases([]) == []


# The authors' two files (MoCLIP-Lite configs/), in their format, shortened.
AUTHORS_TEMPLATES = ["a photo of {}", "a video of {}", "a person is {}"]
AUTHORS_MAPPINGS = {"ApplyEyeMakeup": ["applying eye makeup", "doing eye makeup"], "Archery": ["practicing archery"]}


def authors_prompts(name: str) -> list[str]:
    """Their generate_text_features.py: every equivalent phrase, every template in order."""
    return [t.format(e) for e in AUTHORS_MAPPINGS.get(name, [name.lower()]) for t in AUTHORS_TEMPLATES]


def test_a_prompt_file_pointing_at_the_authors_files_gives_their_prompts(tmp_path):
    """clip.prompts as a file: a mapping naming their templates and phrase files (as they
    publish them) gives each class their prompts in their order; the workflow's inputs are
    all three files, so an edit to any reruns zero-shot."""
    (tmp_path / "prompt_templates.json").write_text(json.dumps(AUTHORS_TEMPLATES))
    (tmp_path / "class_mappings.json").write_text(json.dumps(AUTHORS_MAPPINGS))
    theirs = tmp_path / "theirs.yaml"
    theirs.write_text("templates: prompt_templates.json\nphrases: class_mappings.json\n")
    for name in ("ApplyEyeMakeup", "Archery"):
        assert class_prompts(name, str(theirs)) == authors_prompts(name)
    assert class_prompts("PlayingDaf", str(theirs)) == [t.format("playing daf") for t in AUTHORS_TEMPLATES]
    assert prompt_files(str(theirs)) == [theirs, tmp_path / "prompt_templates.json", tmp_path / "class_mappings.json"]
    # Their templates file alone: the class words in every template; inline lists work too.
    assert class_prompts("Archery", str(tmp_path / "prompt_templates.json")) == [
        t.format("archery") for t in AUTHORS_TEMPLATES
    ]
    inline = tmp_path / "inline.json"
    inline.write_text(json.dumps({"templates": AUTHORS_TEMPLATES, "phrases": AUTHORS_MAPPINGS}))
    assert prompt_set(str(inline)) == prompt_set(str(theirs))
    assert prompt_files(str(inline)) == [inline] and prompt_files("clip-ucf101") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", r"p.json: templates must be a non-empty list of strings, each with '\{\}'"),
        ('["a photo of"]', r"p.json: templates must be"),
        ("{not json", r"p.json: not valid JSON"),
        ('{"templates": ["{}"], "extra": 1}', r"p.json: expected a list of templates, or a mapping"),
        ('{"templates": ["{}"], "phrases": {"Archery": "archery"}}', r"p.json: phrases: class 'Archery'"),
        ('{"templates": ["{}"], "phrases": "missing.json"}', r"missing.json: cannot read the prompt file"),
    ],
)
def test_a_bad_prompt_file_names_the_file_and_what_is_wrong(tmp_path, text, message):
    (tmp_path / "p.json").write_text(text)
    with pytest.raises(PromptFileError, match=message):
        prompt_set(str(tmp_path / "p.json"))
