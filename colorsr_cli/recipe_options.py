"""Command-line options made from a training recipe (train/recipes.py): one option per field,
named --field-name unless the field names its flag, with the field's type, default and help.
A setting is spelled once, in its recipe; the commands cannot fall out of step with it."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any

import typer

from colorsr_cli.errors import RecipeError
from colorsr_cli.train.recipes import TrainingRecipe

RECIPE_PANEL = "Recipe"  # --help lists the recipe's own options apart from those every run has


def flag_of(f: Field) -> str:
    """The option a recipe field is given by: its metadata's flag, or --field-name."""
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def recipe_parameters(recipe_type: type[TrainingRecipe], cli_defaults: dict[str, Any]
                      ) -> list[inspect.Parameter]:
    """One typer option per field of recipe_type, in field order; cli_defaults gives a default on
    the command line to a field the recipe requires (e.g. the run folder)."""
    hints = typing.get_type_hints(recipe_type)
    own = set(recipe_type.__annotations__)
    params = []
    for f in fields(recipe_type):
        hint = hints[f.name]
        if f.metadata["path"]:
            hint = Path | None if f.default is None else Path
        default = cli_defaults.get(f.name, ... if f.default is MISSING else f.default)
        option = typer.Option(default, flag_of(f), help=f.metadata["help"],
                              rich_help_panel=RECIPE_PANEL if f.name in own else None)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=hint))
    return params


def recipe_from_options(recipe_type: type[TrainingRecipe], values: dict[str, Any]) -> TrainingRecipe:
    """The recipe of parsed option values (paths stored as strings); a value the recipe refuses
    is a usage error naming its option."""
    by_name = {f.name: f for f in fields(recipe_type)}
    given = {name: str(v) if by_name[name].metadata["path"] and v is not None else v
             for name, v in values.items()}
    try:
        return recipe_type(**given)
    except RecipeError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"'{flag_of(by_name[exc.field]).split('/')[0]}'"
                                 ) from None


def recipe_command(recipe_type: type[TrainingRecipe], **cli_defaults: Any
                   ) -> Callable[[Callable[[Any, bool], None]], Callable[..., None]]:
    """Decorator: command(recipe, resume) becomes a typer command with an option per field of
    recipe_type and --resume; its docstring is the command's help."""
    resume = inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                               default=typer.Option(False, "--resume",
                                                    help="Continue the run in --out from last.pt."))
    params = [*recipe_parameters(recipe_type, cli_defaults), resume]

    def decorate(command: Callable[[Any, bool], None]) -> Callable[..., None]:
        def parse_and_run(**values: Any) -> None:
            resume_run = values.pop("resume")
            command(recipe_from_options(recipe_type, values), resume_run)

        parse_and_run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        parse_and_run.__annotations__ = {p.name: p.annotation for p in params}
        for name in ("__name__", "__qualname__", "__doc__", "__module__"):
            setattr(parse_and_run, name, getattr(command, name))
        return parse_and_run

    return decorate
