from __future__ import annotations

import subprocess
import sys
import typing

from service.specs import MethodName, PredictorName
from tests.conftest import ROOT


def test_the_api_starts_without_importing_torch_or_lightgbm():
    code = ("import sys; from api.app import create_app; create_app(); "
            "print(sorted({'torch', 'lightgbm'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_spec_predictor_names_match_the_registry():
    from dvrl_core.predictors import PREDICTORS

    assert set(typing.get_args(PredictorName)) == set(PREDICTORS) | {"auto"}


def test_spec_method_names_match_the_registry():
    from dvrl_core.methods import METHODS

    assert set(typing.get_args(MethodName)) == set(METHODS)
