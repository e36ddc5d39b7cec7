"""train.py's flags are generated from TrainConfig: one flag per field, same default and type, and back."""

import dataclasses
import importlib.util
import os
import sys
import typing

import pytest
from absl import flags

from emonet_tf import training
from emonet_tf.training import cli_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = {f.name: f for f in dataclasses.fields(training.TrainConfig)}
REQUIRED = ["--dataset=d", "--model_dir=m"]
#: absl flag class of each DEFINE_* function.
FLAG_CLASS = {
    "DEFINE_string": "Flag",
    "DEFINE_integer": "Flag",
    "DEFINE_float": "Flag",
    "DEFINE_boolean": "BooleanFlag",
    "DEFINE_enum": "EnumFlag",
}
PARSER = {
    "DEFINE_string": "ArgumentParser",
    "DEFINE_integer": "IntegerParser",
    "DEFINE_float": "FloatParser",
    "DEFINE_boolean": "BooleanParser",
    "DEFINE_enum": "EnumParser",
}


def fresh_flags():
    values = flags.FlagValues()
    cli_flags.define_flags(values)
    return values


def python_type(field):
    hint = typing.get_type_hints(training.TrainConfig)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) is typing.Union and len(args) == 1 else hint


def test_one_flag_per_field_with_the_same_default_and_type():
    values = fresh_flags()
    assert sorted(values) == sorted(FIELDS)  # every field a flag, every flag a field, once
    for name, field in FIELDS.items():
        flag = values[name]
        kind = cli_flags.flag_kind(field)
        assert type(flag).__name__ == FLAG_CLASS[kind] and type(flag.parser).__name__ == PARSER[kind], name
        assert flag.help.endswith(field.metadata["help"]) and field.metadata["help"], name  # enums: <a|b>: ...
        if field.default is dataclasses.MISSING:
            assert flag.default is None and name in ("dataset", "model_dir")
            continue
        assert cli_flags.from_flag_text(field, flag.default) == field.default, name
        if "choices" in field.metadata:
            assert flag.parser.enum_values == list(field.metadata["choices"]), name
            assert set(field.metadata.get("values", {}).values()) | set(field.metadata["choices"]) >= {field.default}
        elif field.default is not None:
            assert type(flag.default) is python_type(field), name  # bool stays bool, float stays float
        else:
            assert python_type(field) in (str, int, float, typing.Any), name


def test_flags_parse_into_the_same_config_as_the_dataclass_defaults():
    values = fresh_flags()
    values(["train.py"] + REQUIRED)
    assert cli_flags.config_from_flags(values) == training.TrainConfig(dataset="d", model_dir="m")
    values = fresh_flags()
    values(
        ["train.py"]
        + REQUIRED
        + [
            "--feature_cache=false",
            "--mixed_precision=true",
            "--noexport",
            "--max_steps=3",
            "--learning_rate=1e-3",
            "--init=scratch",
            "--noprogress",
        ]
    )
    config = cli_flags.config_from_flags(values)
    assert (config.feature_cache, config.mixed_precision, config.export, config.max_steps, config.progress) == (
        False,
        True,
        False,
        3,
        False,
    )
    assert config.learning_rate == 1e-3 and config.init == "scratch"
    values = fresh_flags()
    values(["train.py"] + REQUIRED + ["--mixed_precision=mixed_float16", "--feature_cache=auto"])
    config = cli_flags.config_from_flags(values)
    assert config.mixed_precision == "mixed_float16" and config.feature_cache is None


def test_bad_and_missing_flags_are_refused_by_absl():
    with pytest.raises(flags.IllegalFlagValueError):
        fresh_flags()(["train.py"] + REQUIRED + ["--init=nope"])
    with pytest.raises(flags.IllegalFlagValueError, match="dataset"):
        fresh_flags()(["train.py", "--model_dir=m"])


def test_flagfile(tmp_path):
    flagfile = tmp_path / "run.flags"
    flagfile.write_text("--dataset=ds\n--model_dir=md\n--global_batch_size=4\n--noaugment\n--eval_split=\n")
    values = fresh_flags()
    values(["train.py", f"--flagfile={flagfile}", "--seed=3"])
    config = cli_flags.config_from_flags(values)
    assert (config.dataset, config.model_dir, config.global_batch_size, config.seed, config.eval_split) == (
        "ds",
        "md",
        4,
        3,
        "",
    )


def test_identity_fields_are_marked_in_the_declaration():
    assert training.IDENTITY_FIELDS == tuple(n for n, f in FIELDS.items() if f.metadata["identity"])
    assert {"learning_rate", "seed", "init", "weights"} <= set(training.IDENTITY_FIELDS)
    assert not {"epochs", "max_steps", "model_dir", "progress", "strategy"} & set(training.IDENTITY_FIELDS)
    config = training.TrainConfig(dataset="d", model_dir="m", weights=os.path.join("w", "x.npy"))
    assert list(config.identity()) == list(training.IDENTITY_FIELDS)


def test_train_py_defines_exactly_the_generated_flags():
    spec = importlib.util.spec_from_file_location("train_script_under_test", os.path.join(ROOT, "train.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # absl names a flag's module through sys.modules
    spec.loader.exec_module(module)  # defines the flags on absl's global FLAGS, once per process
    assert {f.name for f in module.FLAGS.get_flags_for_module(cli_flags.__name__)} == set(FIELDS)
    # Key flags of the script: what `python train.py --help` lists.
    assert {f.name for f in module.FLAGS.get_key_flags_for_module(spec.name)} == set(FIELDS)


def test_docs_show_the_generated_flag_table():
    with open(os.path.join(ROOT, "docs", "training.md"), encoding="utf-8") as f:
        docs = f.read()
    assert cli_flags.flags_table() in docs, (
        "docs/training.md is out of date: paste the output of `python -m emonet_tf.training.cli_flags`"
    )
