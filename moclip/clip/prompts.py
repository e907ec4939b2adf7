"""Zero-shot prompt sets: CLIP's 48 UCF101 templates, hand-written action phrases per UCF101
class, or a user's file of templates and phrases (the authors' published ones, say).

Kept apart from the CLIP stream so that prompt text can change (and be tested) without a model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# CLIP's own UCF101 prompt set (Radford et al., prompt engineering notebook): 48 templates.
CLIP_UCF101_TEMPLATES = tuple(
    f"a {kind} of {who} {verb}{{}}."
    for verb in ("", "using ", "doing ", "during ", "performing ", "practicing ")
    for who in ("a person", "the person")
    for kind in ("photo", "video", "example", "demonstration")
)

# Generic templates for the hand-written phrases below. A phrase is either an -ing phrase
# ("playing the cello") or a noun phrase ("a baby crawling"), so no template names a person.
PHRASE_TEMPLATES = (
    "a video of {}.",
    "a photo showing {}.",
    "a clip of {}.",
    "a frame from a video of {}.",
    "a YouTube video of {}.",
    "a low-resolution video of {}.",
    "an amateur video of {}.",
    "footage of {}.",
    "a still image of {}.",
    "a snapshot of {}.",
    "a scene showing {}.",
    "a picture of {}.",
)

# Class names that read badly when split at capitals.
NAME_OVERRIDES = {
    "YoYo": "yo-yo",
    "Skijet": "jet ski",
    "SkateBoarding": "skateboarding",
    "PushUps": "push-ups",
    "PullUps": "pull-ups",
    "WallPushups": "wall push-ups",
    "HandstandPushups": "handstand push-ups",
    "Shotput": "shot put",
    "BodyWeightSquats": "bodyweight squats",
    "SkyDiving": "skydiving",
}
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z]|\b|\d)|[A-Z]?[a-z]+|\d+")

# One or two plain-English descriptions of each UCF101 class (names as in classInd.txt).
UCF101_PHRASES: dict[str, tuple[str, ...]] = {
    "ApplyEyeMakeup": ("applying eye makeup", "putting on mascara or eyeliner"),
    "ApplyLipstick": ("applying lipstick", "putting lipstick on the lips"),
    "Archery": ("shooting a bow and arrow", "an archer drawing a bow"),
    "BabyCrawling": ("a baby crawling", "an infant crawling on the floor"),
    "BalanceBeam": ("a gymnast on the balance beam", "performing a balance beam routine"),
    "BandMarching": ("a marching band on parade", "a band marching down a street"),
    "BaseballPitch": ("pitching a baseball", "a pitcher throwing from the mound"),
    "Basketball": ("shooting a basketball", "playing basketball"),
    "BasketballDunk": ("dunking a basketball", "a slam dunk"),
    "BenchPress": ("doing a bench press", "lifting a barbell on a weight bench"),
    "Biking": ("riding a bicycle", "cycling outdoors"),
    "Billiards": ("playing billiards", "hitting a ball with a cue on a pool table"),
    "BlowDryHair": ("blow-drying hair", "drying hair with a hair dryer"),
    "BlowingCandles": ("blowing out candles", "blowing out the candles on a birthday cake"),
    "BodyWeightSquats": ("doing bodyweight squats", "squatting without weights"),
    "Bowling": ("bowling", "rolling a bowling ball down a lane"),
    "BoxingPunchingBag": ("punching a heavy bag", "boxing training on a punching bag"),
    "BoxingSpeedBag": ("hitting a speed bag", "a boxer working a speed bag"),
    "BreastStroke": ("swimming breaststroke",),
    "BrushingTeeth": ("brushing teeth", "cleaning teeth with a toothbrush"),
    "CleanAndJerk": ("a weightlifter doing a clean and jerk", "lifting a barbell overhead"),
    "CliffDiving": ("cliff diving", "diving off a cliff into the sea"),
    "CricketBowling": ("bowling a cricket ball", "a cricket bowler running in"),
    "CricketShot": ("hitting a cricket ball with a bat", "a batsman playing a cricket shot"),
    "CuttingInKitchen": ("chopping food in a kitchen", "cutting vegetables on a cutting board"),
    "Diving": ("diving off a springboard", "a diver jumping into a pool"),
    "Drumming": ("playing the drums", "drumming on a drum kit"),
    "Fencing": ("fencing with swords", "two fencers dueling"),
    "FieldHockeyPenalty": ("taking a field hockey penalty", "shooting a penalty in field hockey"),
    "FloorGymnastics": ("a floor gymnastics routine", "tumbling on a gymnastics floor"),
    "FrisbeeCatch": ("catching a frisbee", "throwing and catching a flying disc"),
    "FrontCrawl": ("swimming front crawl", "swimming freestyle"),
    "GolfSwing": ("swinging a golf club", "hitting a golf ball"),
    "Haircut": ("getting a haircut", "cutting someone's hair"),
    "Hammering": ("hammering a nail", "hitting something with a hammer"),
    "HammerThrow": ("an athlete throwing the hammer", "spinning round and throwing a hammer"),
    "HandstandPushups": ("doing handstand push-ups",),
    "HandstandWalking": ("walking on hands", "walking in a handstand"),
    "HeadMassage": ("getting a head massage", "massaging someone's head"),
    "HighJump": ("doing the high jump", "jumping over a high bar"),
    "HorseRace": ("a horse race", "jockeys racing horses on a track"),
    "HorseRiding": ("riding a horse", "horseback riding"),
    "HulaHoop": ("spinning a hula hoop", "hula hooping"),
    "IceDancing": ("ice dancing", "a couple dancing on ice skates"),
    "JavelinThrow": ("throwing a javelin",),
    "JugglingBalls": ("juggling balls",),
    "JumpingJack": ("doing jumping jacks",),
    "JumpRope": ("jumping rope", "skipping with a rope"),
    "Kayaking": ("paddling a kayak", "kayaking on a river"),
    "Knitting": ("knitting with needles and yarn",),
    "LongJump": ("doing the long jump", "jumping into a sand pit"),
    "Lunges": ("doing lunges", "stepping forward into a lunge"),
    "MilitaryParade": ("a military parade", "soldiers marching in formation"),
    "Mixing": ("mixing batter in a bowl", "stirring ingredients with a whisk"),
    "MoppingFloor": ("mopping the floor", "cleaning a floor with a mop"),
    "Nunchucks": ("swinging nunchucks", "doing martial arts with nunchucks"),
    "ParallelBars": ("a gymnast on the parallel bars", "swinging on parallel bars"),
    "PizzaTossing": ("tossing pizza dough", "spinning pizza dough in the air"),
    "PlayingCello": ("playing the cello",),
    "PlayingDaf": ("playing the daf", "playing a frame drum"),
    "PlayingDhol": ("playing the dhol", "beating a large barrel drum"),
    "PlayingFlute": ("playing the flute",),
    "PlayingGuitar": ("playing the guitar", "strumming a guitar"),
    "PlayingPiano": ("playing the piano",),
    "PlayingSitar": ("playing the sitar",),
    "PlayingTabla": ("playing the tabla", "playing a pair of hand drums"),
    "PlayingViolin": ("playing the violin",),
    "PoleVault": ("pole vaulting", "vaulting over a bar with a pole"),
    "PommelHorse": ("a gymnast on the pommel horse", "swinging around a pommel horse"),
    "PullUps": ("doing pull-ups", "pulling up on a bar"),
    "Punch": ("throwing punches", "boxers punching in a ring"),
    "PushUps": ("doing push-ups",),
    "Rafting": ("white-water rafting", "paddling a raft through rapids"),
    "RockClimbingIndoor": ("climbing an indoor climbing wall", "bouldering in a gym"),
    "RopeClimbing": ("climbing a rope",),
    "Rowing": ("rowing a boat", "a rowing crew on the water"),
    "SalsaSpin": ("dancing salsa", "spinning a salsa partner"),
    "ShavingBeard": ("shaving a beard", "shaving with a razor"),
    "Shotput": ("putting the shot", "throwing a shot put"),
    "SkateBoarding": ("skateboarding", "riding a skateboard"),
    "Skiing": ("skiing down a snowy slope",),
    "Skijet": ("riding a jet ski", "a personal watercraft speeding on water"),
    "SkyDiving": ("skydiving", "free-falling from a plane with a parachute"),
    "SoccerJuggling": ("juggling a soccer ball", "keeping a soccer ball in the air"),
    "SoccerPenalty": ("taking a soccer penalty kick", "shooting a penalty at a goalkeeper"),
    "StillRings": ("a gymnast on the still rings", "holding a position on gymnastic rings"),
    "SumoWrestling": ("sumo wrestling", "two sumo wrestlers pushing in a ring"),
    "Surfing": ("surfing a wave", "riding a surfboard"),
    "Swing": ("swinging on a swing", "a child on a playground swing"),
    "TableTennisShot": ("hitting a table tennis ball", "playing ping-pong"),
    "TaiChi": ("practicing tai chi", "doing slow tai chi movements"),
    "TennisSwing": ("swinging a tennis racket", "hitting a tennis ball"),
    "ThrowDiscus": ("throwing a discus",),
    "TrampolineJumping": ("jumping on a trampoline", "bouncing on a trampoline"),
    "Typing": ("typing on a keyboard",),
    "UnevenBars": ("a gymnast on the uneven bars", "swinging between uneven bars"),
    "VolleyballSpiking": ("spiking a volleyball", "hitting a volleyball over the net"),
    "WalkingWithDog": ("walking a dog", "walking with a dog on a leash"),
    "WallPushups": ("doing wall push-ups", "pushing up against a wall"),
    "WritingOnBoard": ("writing on a board", "writing on a whiteboard or blackboard"),
    "YoYo": ("playing with a yo-yo", "doing yo-yo tricks"),
}

PROMPT_SETS = ("clip-ucf101", "phrases")  # clip.prompts: one of these, or a prompt file


@dataclass(frozen=True)
class PromptSet:
    """What zero-shot turns each class into: every template filled with each of the class's
    phrases, or with its class words (:func:`class_prompt_name`) where it has none."""

    templates: tuple[str, ...]
    phrases: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def prompts(self, name: str) -> list[str]:
        words = self.phrases.get(name) or (class_prompt_name(name),)
        return [t.format(p) for p in words for t in self.templates]


class PromptFileError(ValueError):
    """A prompt file that cannot be used; the message names the file and what is wrong."""


def _read_mapping_or_list(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PromptFileError(f"{path}: cannot read the prompt file: {e.strerror}") from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise PromptFileError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {e}") from None


def _templates(value, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or any(not isinstance(t, str) or "{}" not in t for t in value):
        raise PromptFileError(f"{where}: templates must be a non-empty list of strings, each with '{{}}'")
    return tuple(value)


def read_prompt_file(path: Path | str) -> PromptSet:
    """A prompt file, JSON or YAML: a list of templates (the authors'
    ``configs/prompt_templates.json``), used with the class words; or a mapping with
    ``templates`` and optionally ``phrases`` (class name -> list of phrases), each given
    inline or as the path, relative to this file, of a file holding it (the authors'
    ``prompt_templates.json`` and ``class_mappings.json``)."""
    path = Path(path)
    data = _read_mapping_or_list(path)
    if isinstance(data, list):
        return PromptSet(_templates(data, str(path)))
    if not isinstance(data, dict) or "templates" not in data or set(data) - {"templates", "phrases"}:
        raise PromptFileError(f"{path}: expected a list of templates, or a mapping of templates (and phrases)")
    templates, where_t = data["templates"], f"{path}: templates"
    if isinstance(templates, str):
        where_t = str(path.parent / templates)
        templates = _read_mapping_or_list(path.parent / templates)
    phrases = data.get("phrases") or {}
    where = f"{path}: phrases"
    if isinstance(phrases, str):
        where = str(path.parent / phrases)
        phrases = _read_mapping_or_list(path.parent / phrases)
    if not isinstance(phrases, dict):
        raise PromptFileError(f"{where}: phrases must map each class name to a list of phrases")
    for cls, ps in phrases.items():
        if not isinstance(ps, list) or not ps or any(not isinstance(p, str) for p in ps):
            raise PromptFileError(f"{where}: class {cls!r}: a non-empty list of phrases expected")
    return PromptSet(_templates(templates, where_t), {k: tuple(v) for k, v in phrases.items()})


def prompt_files(prompts: str) -> list[Path]:
    """The files a ``clip.prompts`` value reads (none for a built-in set): the workflow's
    inputs, so that an edit to them reruns zero-shot."""
    if prompts in PROMPT_SETS:
        return []
    path = Path(prompts)
    data = _read_mapping_or_list(path)
    parts = [data.get(k) for k in ("templates", "phrases")] if isinstance(data, dict) else []
    return [path] + [path.parent / p for p in parts if isinstance(p, str)]


def prompt_set(prompts: str = "clip-ucf101", templates: Sequence[str] | None = None) -> PromptSet:
    """``clip-ucf101`` (CLIP's 48 templates x the class words), ``phrases`` (12 templates x
    the hand-written UCF101_PHRASES), or a prompt file (:func:`read_prompt_file`);
    ``templates`` replaces the set's templates."""
    if prompts == "clip-ucf101":
        ps = PromptSet(CLIP_UCF101_TEMPLATES)
    elif prompts == "phrases":
        ps = PromptSet(PHRASE_TEMPLATES, dict(UCF101_PHRASES))
    elif Path(prompts).suffix in (".json", ".yaml", ".yml") or Path(prompts).is_file():
        ps = read_prompt_file(prompts)
    else:
        raise ValueError(f"unknown prompt set {prompts!r}; valid: {', '.join(PROMPT_SETS)}, or a prompt file")
    if templates is None:
        return ps
    if not templates or any("{}" not in t for t in templates):
        raise ValueError(f"templates must be a non-empty list of strings each with '{{}}', got {list(templates)!r}")
    return PromptSet(tuple(templates), ps.phrases)


def class_prompt_name(name: str) -> str:
    """``ApplyEyeMakeup`` -> ``apply eye makeup`` (with an override table for the odd ones)."""
    if name in NAME_OVERRIDES:
        return NAME_OVERRIDES[name]
    return " ".join(w.lower() for w in _WORD.findall(name)) or name.lower()


def class_prompts(name: str, prompts: str = "clip-ucf101", templates: Sequence[str] | None = None) -> list[str]:
    """The prompt strings of one class under ``prompts`` (see :func:`prompt_set`)."""
    return prompt_set(prompts, templates).prompts(name)


def missing_phrases(names: Iterable[str], ps: PromptSet | None = None) -> list[str]:
    """The class names, in the order given, that have no phrase in ``ps`` (default: the
    hand-written set): they fall back to their class words."""
    phrases = UCF101_PHRASES if ps is None else ps.phrases
    return [n for n in names if n not in phrases]
