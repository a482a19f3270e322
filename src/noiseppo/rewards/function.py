"""A user's own Python reward, named ``module:function`` (or ``path/to/file.py:function``).

The function is called as ``function(images, prompts) -> scores`` like every reward. A
class is instantiated once without arguments (a reward that loads a model in
``__init__``), then called. The module is imported from the current folder or the
``PYTHONPATH``; a file path is loaded as it is.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


def _class_and_line(e: BaseException) -> str:
    """What ``e`` was, for "raised ...": its class and its message's first line."""
    from noiseppo.errors import first_line

    line = first_line(e)
    return f"{e.__class__.__name__}: {line}" if line else e.__class__.__name__


def _import(spec: str, module_name: str) -> ModuleType:
    from noiseppo.errors import UserError

    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise UserError(f"reward '{spec}': {path}: file not found")
        loader_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
        return module
    # As `python -m` would: the current folder first (the console script's own folder is not it).
    added = os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module_name)
    finally:
        if added:
            sys.path.remove(os.getcwd())


def load_function(spec: str) -> Any:
    """The reward ``spec`` names; every mistake is one line naming it."""
    from noiseppo.errors import UserError

    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr.isidentifier():
        raise UserError(f"reward '{spec}': expected module:function, e.g. my_rewards:sharpness")
    try:
        module = _import(spec, module_name)
    except UserError:
        raise
    except ModuleNotFoundError as e:
        raise UserError(f"reward '{spec}': no module named '{e.name}' (not in the current folder or PYTHONPATH)") from e
    except Exception as e:  # the user's module itself failed while importing
        raise UserError(f"reward '{spec}': importing '{module_name}' raised {_class_and_line(e)}") from e
    fn = getattr(module, attr, None)
    if fn is None:
        raise UserError(f"reward '{spec}': module '{module_name}' has no attribute '{attr}'")
    if inspect.isclass(fn):
        try:
            fn = fn()
        except Exception as e:
            raise UserError(f"reward '{spec}': {attr}() raised {_class_and_line(e)}") from e
    if not callable(fn):
        raise UserError(f"reward '{spec}': '{attr}' is a {type(fn).__name__}, not a function")
    return fn
