"""The job spec: what a user asks a valuation job to do, with the paper's defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dvrl_core.io import repeated_names

from .webhook_events import EventName
from .webhook_targets import MAX_URL_LENGTH, check_syntax

# the predictor registry's names and "auto", spelled out so that the API does not import torch; a
# test checks that they match dvrl_core.predictors.PREDICTORS
PredictorName = Literal["auto", "bernoulli_naive_bayes", "lightgbm", "linear_regression",
                        "logistic_regression", "mlp", "naive_bayes"]
# the valuation methods' names (dvrl_core.methods.METHODS), spelled out for the same reason
MethodName = Literal["dvrl", "knn_shapley", "data_oob", "leave_one_out"]
Evaluation = Literal["removal", "weighted", "training_choices"]
# dvrl_core.ensemble.MAX_MEMBERS, spelled out for the same reason (a test checks it)
MAX_ENSEMBLE = 32
# the models an evaluation may train: every predictor but "auto"
EvaluationModelName = Literal["bernoulli_naive_bayes", "lightgbm", "linear_regression",
                              "logistic_regression", "mlp", "naive_bayes"]


NUMBERS = (int, float, int | None, float | None)


class StrictModel(BaseModel):
    # NaN and Infinity (which JSON parsers take) are said to be what they are: a NaN fraction
    # was refused as "should be less than 1"
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: object, info: ValidationInfo) -> object:
        """JSON's true and false, and strings, are not numbers (pydantic would read true as 1
        iteration, and "2" as 2 runs: a client that sends strings has a bug worth seeing)."""
        if isinstance(value, bool | str) and info.field_name is not None and \
                cls.model_fields[info.field_name].annotation in NUMBERS:
            what = "true or false" if isinstance(value, bool) else f"a string ({value!r})"
            raise ValueError(f"a number is needed, not {what}")
        return value


class ValidationSpec(StrictModel):
    """A validation dataset from the target task, or a fraction held out of the training table."""

    dataset_id: str | None = Field(None, description="id of an uploaded validation dataset")
    fraction: float | None = Field(None, gt=0, lt=1, description="hold out this fraction")

    @model_validator(mode="after")
    def _exactly_one(self) -> ValidationSpec:
        if (self.dataset_id is None) == (self.fraction is None):
            raise ValueError("give exactly one of dataset_id or fraction")
        return self


class TestSpec(StrictModel):
    dataset_id: str = Field(description="id of an uploaded test dataset (for removal curves)")


class DVRLParams(StrictModel):
    """DVRL hyper-parameters; defaults are the paper's (and this service's, see README)."""

    iterations: int = Field(2000, ge=1, le=100_000, description="the most iterations the run "
                            "does; it stops earlier once its values have converged (tolerance)")
    tolerance: float = Field(
        1e-3, ge=0, lt=1, description="stop once the averaged values' ranking changes by less "
        "than this (1 - Spearman) between two checks, twice in a row, or once the trust "
        "check's guard has decided to return the prior; 0 runs every iteration. "
        "summary.diagnostics.convergence says how many iterations were used, and why")
    check_every: int = Field(50, ge=1, le=100_000, description="iterations between two "
                             "checks (convergence, and whether the learned values can still "
                             "clear the trust check's guard)")
    min_iterations: int = Field(200, ge=0, le=100_000, description="no convergence check "
                                "before this many iterations (the guard's give-up check runs "
                                "from the second check, or from here if sooner)")
    batch_size: int = Field(2000, ge=2, le=1_000_000)
    inner_iterations: int = Field(100, ge=1, le=10_000)
    predictor_batch_size: int = Field(256, ge=1, le=100_000)
    hidden_dim: int = Field(100, ge=1, le=4096)
    layer_number: int = Field(5, ge=3, le=20)
    comb_dim: int = Field(10, ge=1, le=1024)
    learning_rate: float = Field(0.01, gt=0, le=1)
    rollouts: int = Field(32, ge=1, le=4096)
    metric: Literal["auc", "accuracy", "log_loss", "mae", "mse", "rmspe"] | None = None
    baseline: Literal["auto", "fixed", "moving_average", "leave_one_out"] = "auto"
    prior: Literal["pooled", "validation"] = Field(
        "pooled", description="what DVRL starts from (classification): a pool of validation- "
        "and training-fitted models weighted on the validation rows, or the official code's "
        "single validation model")
    shift: Literal["auto", "off"] = Field(
        "auto", description="auto: where the validation rows' features come from another "
        "distribution than the training rows' (a cross-fitted classifier tells them apart, "
        "with enough overlap), the prior's values are weighted toward the rows that resemble "
        "the validation rows (importance weights; summary.diagnostics.shift says whether); "
        "off: never")


class EvaluationSpec(StrictModel):
    """The model that the evaluations train to show what the values are worth."""

    model: EvaluationModelName = Field(
        "lightgbm", description="trained by the removal curves, weighted training and training "
        "choices (the paper: LightGBM for tables, logistic regression for images, Naive Bayes "
        "for text)")
    metric: Literal["auc", "accuracy", "log_loss", "mae", "mse", "rmspe"] | None = Field(
        None, description="test metric; default auc (classification) or mse")
    remove_fraction: float = Field(
        0.2, gt=0, lt=1, description="training_choices: the fraction of lowest-valued rows "
        "that the without_lowest model leaves out")


def _default_events() -> list[EventName]:
    return ["job.finished"]


class NotifySpec(StrictModel):
    """Where to POST signed events about the job (README: Webhooks)."""

    url: str = Field(max_length=MAX_URL_LENGTH, description="an http(s) URL on a public "
                     "address (private, loopback and link-local ones are refused unless the "
                     "service allows them)")
    events: list[EventName] = Field(
        default_factory=_default_events, min_length=1, max_length=2,
        description="job.finished: the job ended (SUCCEEDED, FAILED, CANCELLED); "
        "job.progress: training passed 25%, 50% and 75%")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_syntax(value)

    @field_validator("events")
    @classmethod
    def _distinct(cls, value: list[EventName]) -> list[EventName]:
        return list(dict.fromkeys(value))


def _default_evaluations() -> list[Evaluation]:
    return ["removal"]


class JobSpec(StrictModel):
    """Everything a job needs. Only ``dataset_id``, ``target`` and ``validation`` are required."""

    dataset_id: str = Field(description="the training dataset")
    target: str = Field(min_length=1, description="the label column")
    validation: ValidationSpec
    test: TestSpec | None = None
    task: Literal["auto", "classification", "regression"] = "auto"
    id_column: str | None = Field(None, description="column that names rows in the results")
    features: list[str] | None = Field(
        None, min_length=1, description="feature columns, each named once, not the target; "
        "default all others")
    method: MethodName = Field(
        "dvrl", description="the valuation method: dvrl (default), or a baseline to compare it "
        "with on the same data: knn_shapley (exact KNN-Shapley: the neighbours' accuracy, for a "
        "regression target minus their mean's squared error), data_oob "
        "(out-of-bag accuracy of a bagged tree ensemble) or leave_one_out (logistic or ridge "
        "regression refitted without each row; at most 2,000 training rows). The baselines use "
        "their own defaults and the seed; predictor and dvrl are refused with them")
    predictor: PredictorName | None = Field(
        None, description="the model DVRL trains on selected rows; default: logistic_regression "
        "(linear_regression for regression); naive_bayes is Gaussian Naive Bayes, "
        "bernoulli_naive_bayes Naive Bayes on present/absent features (bag-of-words: the "
        "paper's text model); auto trains each predictor for the task on the training rows and "
        "keeps the one that scores best on the validation rows (its scores are in the job's "
        "diagnostics; lightgbm and mlp are tens of times slower per iteration than the others)")
    dvrl: DVRLParams = Field(default_factory=DVRLParams)
    evaluations: list[Evaluation] = Field(
        default_factory=_default_evaluations, description="removal: curves of the test score "
        "as the lowest / highest / random rows are removed; weighted: the evaluation model "
        "trained with and without the values as weights; training_choices (needs test): the "
        "evaluation model trained uniformly, weighted by the values, without the lowest-valued "
        "rows, on the validation rows alone, on training plus validation rows (uniform, "
        "uniform with the validation rows' share tuned by cross-validation, and weighted), and "
        "on the top-valued training rows plus the validation rows (fraction and share tuned): "
        "the paper's domain-adaptation table and what you would do without values")
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    ensemble: int = Field(
        1, ge=1, le=MAX_ENSEMBLE, description="run DVRL this many times with independent seeds "
        "derived from seed, in parallel on the free workers; the values are the runs' mean, "
        "with a per-row std_error, and the summary's ensemble block gives the rank stability "
        "(mean pairwise Spearman correlation of the runs' values) and each run's trust verdict. "
        "1: one run (default). Each run counts towards the owner's jobs in flight")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    time_budget_s: int | None = Field(None, ge=1, le=7 * 24 * 3600)
    label_noise: float | None = Field(
        None, gt=0, lt=1, description="self-check: flip this fraction of training labels (a "
        "regression target: move that fraction of targets to the other half of their values) "
        "and report how many of them rank lowest in summary.label_noise")
    flag_fraction: float | None = Field(
        None, gt=0, le=1, description="flag this fraction of lowest-valued rows; default: the "
        "label_noise fraction, else 0.1")
    notify: NotifySpec | None = Field(None, description="a webhook: signed events about this "
                                      "job POSTed to a URL")

    @model_validator(mode="after")
    def _ensembles_of_dvrl(self) -> JobSpec:
        if self.ensemble > 1 and self.method != "dvrl":
            raise ValueError(f"ensemble: an ensemble runs DVRL with different seeds; method "
                             f"{self.method} is not DVRL (leave ensemble at 1)")
        return self

    @model_validator(mode="after")
    def _features_named_once(self) -> JobSpec:
        if self.id_column is not None and self.id_column == self.target:
            raise ValueError(f"id_column: {self.target!r} is the target; the id column names "
                             "rows, so it is another column (or none: rows are then numbered)")
        if self.features is not None:
            repeated = repeated_names(self.features)
            if repeated:
                raise ValueError(f"features: each column once; named more than once: "
                                 f"{repeated[:10]}")
            if self.target in self.features:
                raise ValueError(f"features: the target {self.target!r} cannot be a feature")
            if self.id_column is not None and self.id_column in self.features:
                raise ValueError(f"features: the id_column {self.id_column!r} names rows; it "
                                 "cannot be a feature")
        return self

    @model_validator(mode="after")
    def _choices_need_a_test(self) -> JobSpec:
        if "training_choices" in self.evaluations and self.test is None:
            raise ValueError("test: the training_choices evaluation needs a test dataset: the "
                             "validation rows train some of its models, so they cannot score "
                             "them")
        return self

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "dataset_id": "0b8f7d2e-5c1a-4a57-9c44-2f7e1c7f6a10", "target": "income",
        "validation": {"dataset_id": "5e1d7f0c-2b9a-4f4e-8d0e-8a3c3f9b7a21"},
        "label_noise": 0.2, "seed": 0,
    }]})
