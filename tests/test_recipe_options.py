"""`colorsr train color|sr` options are made from the recipe dataclasses: one option per field
and no other (but --resume and --help), the flags users know, every value reaching its field,
refused values named by their option, and a --help that fits 80 columns."""

import re
from dataclasses import MISSING, fields
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from colorsr_cli.cli import app
from colorsr_cli.recipe_options import flag_of
from colorsr_cli.train.recipes import ColorRecipe, SRRecipe

runner = CliRunner()
COMMANDS = {"color": ColorRecipe, "sr": SRRecipe}

# Every flag the two commands took before their options were made from the recipes.
KNOWN_FLAGS = {
    "color": "--data --out --val --epochs --max-steps --batch-size --lr --l1-weight --pixel-loss "
             "--width --depth --size --disc-sigmoid --lsgan --adv-weight --pretrain-steps --ema "
             "--lr-decay-start --native-resample --init --cache --no-cache --head --ce-weight "
             "--temperature --rebalance-mix --global-features --class-folders --class-weight "
             "--disc-lr --holdout-side --val-fraction --select-by --val-every --checkpoint-every "
             "--seed --holdout-seed --device --amp --no-amp --workers --threads --resume",
    "sr": "--data --out --val --hr-size --epochs --max-steps --pretrain-steps --batch-size --lr "
          "--perceptual --adv-weight --pixel-weight --channels --blocks --head-kernel --tail-kernel "
          "--global-skip --no-global-skip --upsampler --lr-kernel --pairs --init --disc-width "
          "--val-every --seed --holdout-seed --checkpoint-every --device --amp --no-amp --workers "
          "--threads --resume",
}


def _command(name):
    return typer.main.get_command(app).commands["train"].commands[name]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_recipe_field_has_one_option_and_every_option_a_field(name):
    params = {p.name: p for p in _command(name).params}
    assert set(params) - {"help"} == {f.name for f in fields(COMMANDS[name])} | {"resume"}
    for f in fields(COMMANDS[name]):
        assert params[f.name].opts[0] == flag_of(f).split("/")[0], f.name
        assert params[f.name].help == f.metadata["help"] and f.metadata["help"], f.name


@pytest.mark.parametrize("name", COMMANDS)
def test_the_flags_users_know_still_work(name):
    flags = {flag for p in _command(name).params for flag in p.opts + p.secondary_opts}
    assert set(KNOWN_FLAGS[name].split()) <= flags


# Options that cannot change together with all the others: --encoder mobilenet_v2 refuses
# --head bins (tests/test_mobilenet.py checks that it reaches the recipe).
KEPT_AT_DEFAULT = {"encoder"}


def _other_value(f):
    """A command-line value for field f unlike its default, and the value the recipe gets."""
    meta, default = f.metadata, f.default
    if meta["choices"]:
        choice = next(c for c in meta["choices"] if c != default)
        return [flag_of(f), str(choice)], choice
    if meta["path"] or f.name == "data":
        return [flag_of(f), f"some/{f.name}"], f"some/{f.name}"
    if isinstance(default, bool):
        on, _, off = flag_of(f).partition("/")
        return ([off] if default else [on]), not default
    if meta["bounds"]:
        lo, hi = meta["bounds"]
        value = lo + (hi - lo) / 4
        return [flag_of(f), str(value)], value
    if isinstance(default, float) or f.name == "disc_lr":
        return [flag_of(f), "0.25"], 0.25
    if f.name in ("class_folders", "vgg_weights", "init", "device"):
        return [flag_of(f), f"x-{f.name}"], f"x-{f.name}"
    number = 7 if default in (None, MISSING) else default + 3
    return [flag_of(f), str(number)], number


def _capture(got):
    """A stand-in trainer that records the recipe and resume flag it is called with."""
    def trainer(recipe, resume, reporter):
        got.append((recipe, resume))
        return Path("run")
    return trainer


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_reaches_its_recipe_field(name, monkeypatch):
    import colorsr_cli.train.color
    import colorsr_cli.train.sr

    got = []
    monkeypatch.setattr(colorsr_cli.train.color, "train_color", _capture(got))
    monkeypatch.setattr(colorsr_cli.train.sr, "train_sr", _capture(got))
    argv, expected = ["train", name, "--resume"], {}
    for f in fields(COMMANDS[name]):
        if f.name in KEPT_AT_DEFAULT:
            expected[f.name] = f.default
            continue
        words, value = _other_value(f)
        argv += words
        expected[f.name] = value
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    [(recipe, resume)] = got
    assert resume is True
    for f in fields(recipe):
        assert getattr(recipe, f.name) == expected[f.name], f.name
        if f.name not in KEPT_AT_DEFAULT:  # the test itself moved every other field
            assert getattr(recipe, f.name) != f.default, f.name


def test_the_defaults_on_the_command_line_are_the_recipes(monkeypatch):
    import colorsr_cli.train.color

    got = []
    monkeypatch.setattr(colorsr_cli.train.color, "train_color", _capture(got))
    assert runner.invoke(app, ["train", "color", "--data", "photos"]).exit_code == 0
    assert got == [(ColorRecipe(data="photos", out="runs/color"), False)]


def test_a_refused_value_is_a_usage_error_naming_its_option(tmp_path):
    def refused(*argv):
        result = runner.invoke(app, ["train", *argv, "--data", str(tmp_path), "--out", str(tmp_path / "run")],
                               terminal_width=200)
        assert result.exit_code == 2
        return " ".join(re.sub("[\u2500-\u257f]", " ", result.output).split())  # box drawing off

    assert "'--native-resample': native resample must be between 0 and 1, got 1.5" in refused(
        "color", "--native-resample", "1.5")
    assert "'--lr-kernel': unknown lr kernel 'box' (one of area, bicubic, mixed)" in refused(
        "sr", "--lr-kernel", "box")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", COMMANDS)
def test_train_help_fits_80_columns(name):
    text = runner.invoke(app, ["train", name, "--help"], terminal_width=80, env={"COLUMNS": "80"}).output
    assert max(map(len, text.splitlines())) <= 80
    assert "…" not in text
    for f in fields(COMMANDS[name]):
        assert flag_of(f).split("/")[0] in text, f.name
