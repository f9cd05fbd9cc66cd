from __future__ import annotations

import dvrl_core


def test_exported_names_are_pinned():
    assert sorted(dvrl_core.__all__) == sorted([
        "DVRL", "PREDICTORS", "CheckpointMismatchError", "ConfigError", "ConstantTargetError",
        "DVRLError", "DataError",
        "EmptyColumnError",
        "MissingColumnError", "MissingTargetError", "PreparedData", "Predictor", "Progress",
        "RunStopped", "SingleClassError", "Split", "TableEncoder", "TargetTypeError",
        "TooFewRowsError", "UnreadableTableError", "UnseenClassError", "ValuationResult",
        "detection_auroc", "discovery_curve", "found_fraction", "infer_task",
        "inject_label_noise", "inject_target_noise", "make_predictor", "prepare",
        "prepare_file", "read_table",
        "removal_curves",
        "training_choices", "weighted_training", "write_table",
    ])
    for name in dvrl_core.__all__:
        assert hasattr(dvrl_core, name)


def test_every_error_is_a_dvrl_error_with_a_stable_code():
    errors = [getattr(dvrl_core, n) for n in dvrl_core.__all__ if n.endswith("Error")]
    codes = {e.code for e in errors}
    assert len(codes) == len(errors)
    assert all(issubclass(e, dvrl_core.DVRLError) for e in errors)
    assert issubclass(dvrl_core.RunStopped, dvrl_core.DVRLError)


def test_library_imports_no_service_code():
    import subprocess
    import sys

    code = ("import sys, dvrl_core, dvrl_core.cli, dvrl_core.datasets, dvrl_core.runtime; "
            "[getattr(dvrl_core, n) for n in dvrl_core.__all__]; "
            "print(sorted({'fastapi', 'celery', 'sqlalchemy', 'service'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
