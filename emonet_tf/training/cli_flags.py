"""absl flags generated from `TrainConfig`: one flag per field, same name, default and help.

The field's type picks the flag: str -> DEFINE_string, int -> DEFINE_integer, float -> DEFINE_float,
bool -> DEFINE_boolean (so `--noexport` works), Optional[X] -> X's flag with default None, Any (the
weights, a path on the command line) -> DEFINE_string, and a field with `choices` -> DEFINE_enum
(its `values` map the flag's texts, e.g. auto/true/false, onto the field's values). Fields without a
default (dataset, model_dir) are required flags.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Union

from absl import flags

from emonet_tf.training.config import TrainConfig, config_from_dict

_DEFINE = {
    str: flags.DEFINE_string,
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    bool: flags.DEFINE_boolean,
    Any: flags.DEFINE_string,
}


def _plain_type(annotation) -> Any:
    """int for Optional[int], the type itself otherwise (Optional only adds a None default)."""
    if typing.get_origin(annotation) is Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def flag_kind(field: dataclasses.Field) -> str:
    """The absl DEFINE_* function name that `define_flags` uses for `field`.

    Raises:
      TypeError: a field type with no flag kind (add one to _DEFINE or give the field choices).
    """
    if "choices" in field.metadata:
        return "DEFINE_enum"
    plain = _plain_type(typing.get_type_hints(TrainConfig)[field.name])
    if plain not in _DEFINE:
        raise TypeError(f"TrainConfig.{field.name}: no absl flag for type {plain!r}")
    return _DEFINE[plain].__name__


def to_flag_text(field: dataclasses.Field, value: Any) -> Any:
    """The flag value that stands for the field value `value` (the text for mapped enums)."""
    for text, mapped in field.metadata.get("values", {}).items():
        if mapped is value or (mapped == value and type(mapped) is type(value)):
            return text
    return value


def from_flag_text(field: dataclasses.Field, value: Any) -> Any:
    """The field value of the flag value `value` (inverse of to_flag_text)."""
    return field.metadata.get("values", {}).get(value, value)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """Defines one flag per TrainConfig field in `flag_values`; returns their names in field order.

    Raises:
      absl.flags.DuplicateFlagError: when called twice on the same FlagValues.
    """
    names = []
    for field in dataclasses.fields(TrainConfig):
        required = field.default is dataclasses.MISSING
        default = None if required else to_flag_text(field, field.default)
        kind = flag_kind(field)
        if kind == "DEFINE_enum":
            flags.DEFINE_enum(
                field.name,
                default,
                list(field.metadata["choices"]),
                field.metadata["help"],
                flag_values=flag_values,
                required=required,
            )
        else:
            getattr(flags, kind)(
                field.name, default, field.metadata["help"], flag_values=flag_values, required=required
            )
        names.append(field.name)
    return names


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> TrainConfig:
    """The TrainConfig of parsed flags (see define_flags).

    Raises:
      TrainConfigError: a required setting missing (only when the flags were not marked required).
    """
    return config_from_dict(
        {f.name: from_flag_text(f, flag_values[f.name].value) for f in dataclasses.fields(TrainConfig)}
    )


def flags_table() -> str:
    """A Markdown table of every flag (name, default, identity, help), as docs/training.md shows it."""
    rows = ["| flag | default | same run | what |", "|---|---|---|---|"]
    for field in dataclasses.fields(TrainConfig):
        default = "required" if field.default is dataclasses.MISSING else f"`{to_flag_text(field, field.default)}`"
        choices = f" One of {', '.join(field.metadata['choices'])}." if "choices" in field.metadata else ""
        rows.append(
            f"| `--{field.name}` | {default} | {'yes' if field.metadata['identity'] else ''} | "
            f"{field.metadata['help']}{choices} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(flags_table())
