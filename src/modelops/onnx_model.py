"""The ONNX form of the model: export, verification against sklearn, onnxruntime predictor."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from modelops.errors import ModelopsError
from modelops.features import CALENDAR_FEATURES, CalendarFeatures, calendar_columns
from modelops.modeling import input_columns

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

TRAINING_CONF = "conf/base/parameters_training.yml"
DATA_CONF = "conf/base/parameters_data_processing.yml"
# Key of the JSON the predictor reads from the ONNX model's metadata_props.
METADATA_KEY = "modelops"
METADATA_FORMAT = 1
OPSET = 21  # ai.onnx; skl2onnx 1.20 is tested up to 22
ML_OPSET = 3  # ai.onnx.ml as skl2onnx writes it
ML_OPSET_TREES = 5  # ai.onnx.ml with TreeEnsemble: float64 splits and leaf weights
# Fed for a category the model never saw, and for a missing one where sklearn treats
# missing as unseen (no missing value among the encoder's training categories).
UNSEEN_CATEGORY = "__modelops_unseen_category__"
FALLBACK = "The model will be served in its sklearn form."
# The graph's two inputs: the categorical columns as one [N, k] string matrix and the
# numeric ones (calendar features included) as one [N, m] float64 matrix.
# OnnxPredictor(row_threads=N) splits a batch of at least this many rows: below it
# the threads cost more than they save (one REST request is one row).
ROW_SPLIT_MIN = 10_000
CATEGORICAL_INPUT = "categorical_columns"
NUMERIC_INPUT = "numeric_columns"
# Links of HistGradientBoostingRegressor losses that skl2onnx's trees reproduce.
IDENTITY_LOSSES = ("squared_error", "absolute_error", "quantile")
# ai.onnx.ml TreeEnsemble (opset 5) node modes.
_MODES = {
    "BRANCH_LEQ": 0,
    "BRANCH_LT": 1,
    "BRANCH_GTE": 2,
    "BRANCH_GT": 3,
    "BRANCH_EQ": 4,
    "BRANCH_NEQ": 5,
}
_ABSENT = object()


class OnnxExportError(ModelopsError):
    """The model has no faithful ONNX form: it is served in its sklearn form.

    Attributes:
        step: The pipeline step (``prepare/categorical``, ``model``...) or ``model``.
        reason: Why, in a few words (for the registry tag).
    """

    def __init__(self, step: str, reason: str, hint: str) -> None:
        self.step = step
        self.reason = reason
        super().__init__(
            f"Cannot export the model to ONNX: step '{step}' {reason}. {FALLBACK}\n"
            f"Hint: {hint.rstrip('.')}."
        )


class OnnxModelError(ModelopsError):
    """An ONNX artifact that modelops did not export (no or unknown metadata)."""


def onnx_sha256(onnx_bytes: bytes) -> str:
    """Hex sha256 of the serialized ONNX model (what the registry tag records)."""
    return hashlib.sha256(onnx_bytes).hexdigest()


# --- what the model reads -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CategoryInput:
    """How one categorical column reaches the ONNX graph.

    Attributes:
        known: The categories the encoder learned (strings).
        missing: What a missing value (None/NaN) is fed as, so that the graph treats
            it as sklearn does: the key skl2onnx wrote for the missing category, or
            ``UNSEEN_CATEGORY`` where sklearn treats missing as an unseen category.
        missing_key: The key standing for the missing category in the graph, if any;
            a request holding this text literally is fed as unseen (sklearn sees a
            string there, not a missing value).
    """

    known: tuple[str, ...]
    missing: str
    missing_key: str | None


@dataclasses.dataclass(frozen=True)
class ModelLayout:
    """The columns a fitted modelops Pipeline reads, and how each reaches ONNX."""

    columns: list[str]
    time_column: str | None
    calendar: list[str]
    categorical: dict[str, CategoryInput]
    numeric: list[str]  # graph inputs as float64, calendar features included
    estimator: str
    nan_allowed: bool
    rest: Pipeline  # the steps after the calendar step (what skl2onnx converts)


def model_layout(model: Any, features: Mapping[str, Any]) -> ModelLayout:
    """Read the structure of a fitted modelops Pipeline through public attributes.

    Args:
        model: The fitted Pipeline (``[calendar,] prepare, model``).
        features: The ``features`` parameters (``time_column``, ``numeric``,
            ``categorical``, ``calendar``).

    Raises:
        OnnxExportError: not a fitted Pipeline on named columns, columns that do not
            match ``features``, or categories ONNX cannot represent faithfully.
    """
    # sklearn at export and verification time only: serving the ONNX form (the
    # batch pipeline, the REST service) never imports it.
    from sklearn.exceptions import NotFittedError  # noqa: PLC0415
    from sklearn.pipeline import Pipeline  # noqa: PLC0415
    from sklearn.utils.validation import check_is_fitted  # noqa: PLC0415

    if not isinstance(model, Pipeline):
        raise OnnxExportError(
            "model",
            f"is a {type(model).__name__}, not an sklearn Pipeline",
            f"train the model with modelops (model.class in {TRAINING_CONF}).",
        )
    try:
        check_is_fitted(model)
    except NotFittedError as err:
        raise OnnxExportError(
            "model", "is not fitted", "export the model returned by train_model."
        ) from err
    columns = [str(name) for name in getattr(model, "feature_names_in_", [])]
    if not columns:
        raise OnnxExportError(
            "model",
            "was not fitted on a DataFrame with named columns",
            "fit the Pipeline on a DataFrame (train_model does).",
        )
    steps = list(model.steps)
    time_column, calendar = None, []
    if isinstance(steps[0][1], CalendarFeatures):
        time_column = steps[0][1].time_column
        calendar = list(dict.fromkeys(steps[0][1].features))
        unknown = [name for name in calendar if name not in CALENDAR_FEATURES]
        if unknown:
            raise OnnxExportError(
                steps[0][0],
                f"derives unknown calendar features {unknown}",
                f"fix features.calendar in {DATA_CONF}.",
            )
        steps = steps[1:]
    if not steps:
        raise OnnxExportError(
            "model", "has no step after the calendar features", "add an estimator."
        )
    categorical = list(dict.fromkeys(features.get("categorical") or []))
    numeric = list(dict.fromkeys([*(features.get("numeric") or []), *calendar]))
    expected = set(input_columns(features))
    if expected != set(columns):
        raise OnnxExportError(
            "model",
            f"reads columns {sorted(columns)} but the features parameters name "
            f"{sorted(expected)}",
            f"pass the features parameters the model was trained with ({DATA_CONF}).",
        )
    rest = Pipeline(steps)
    encoders = _encoders(rest)
    inputs = {
        name: _category_input(name, *encoders.get(name, ("", None, None)))
        for name in categorical
    }
    estimator = steps[-1][1]
    return ModelLayout(
        columns=columns,
        time_column=time_column,
        calendar=calendar,
        categorical=inputs,
        numeric=numeric,
        estimator=f"{type(estimator).__module__}.{type(estimator).__qualname__}",
        nan_allowed=bool(estimator.__sklearn_tags__().input_tags.allow_nan),
        rest=rest,
    )


def _is_missing(value: Any) -> bool:
    return (
        value is None
        or value is pd.NA
        or (isinstance(value, float) and math.isnan(value))
    )


def _encoders(rest: Pipeline) -> dict[str, tuple[str, Any, Any]]:
    """Column -> (step path, encoder, fitted categories) of a ColumnTransformer's encoders."""
    from sklearn.compose import ColumnTransformer  # noqa: PLC0415 (export time only)
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder  # noqa: PLC0415

    found: dict[str, tuple[str, Any, Any]] = {}
    for step_name, step in rest.steps:
        if not isinstance(step, ColumnTransformer):
            continue
        for name, transformer, names in step.transformers_:
            if not isinstance(transformer, (OrdinalEncoder, OneHotEncoder)):
                continue
            if not isinstance(names, (list, tuple)) or not all(
                isinstance(name, str) for name in names
            ):
                continue
            for column, categories in zip(names, transformer.categories_, strict=True):
                found[column] = (f"{step_name}/{name}", transformer, categories)
    return found


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _category_input(
    name: str, path: str, encoder: Any, categories: Any
) -> CategoryInput:
    """How column ``name`` is fed, given the encoder at ``path`` (None: not known).

    Every missing value (None, NaN) reaches the graph as sklearn treats NaN, the
    missing value of pandas' string dtype, which training data and requests have.
    """
    from sklearn.preprocessing import OrdinalEncoder  # noqa: PLC0415 (export time only)

    if encoder is None:  # no encoder modelops knows: verification decides
        return CategoryInput((), UNSEEN_CATEGORY, None)
    values = list(categories)
    known = [value for value in values if isinstance(value, str)]
    strange = [value for value in values if not isinstance(value, str)]
    has_nan = any(_is_nan(value) for value in strange)
    strange = [value for value in strange if not _is_nan(value)]
    if strange:  # None is a category of its own to sklearn, unlike NaN
        raise OnnxExportError(
            path,
            f"(column '{name}') has non-text categories (e.g. {strange[0]!r}); the ONNX form encodes "
            f"text categories, with NaN as the missing value",
            f"train on the column with pandas' string dtype (missing values are "
            f"then NaN), or list only text columns in features.categorical "
            f"({DATA_CONF})",
        )
    key = str(np.nan) if has_nan else None  # skl2onnx writes str(category)
    clashes = sorted({UNSEEN_CATEGORY, *([key] if key else [])} & set(known))
    if clashes:
        raise OnnxExportError(
            path,
            f"(column '{name}') has a category {clashes[0]!r} that the ONNX form reserves for "
            f"missing or unseen values",
            f"rename that category in the source data ({DATA_CONF})",
        )
    if key is None:  # NaN unseen in training: sklearn treats it as unseen
        return CategoryInput(tuple(known), UNSEEN_CATEGORY, None)
    if isinstance(encoder, OrdinalEncoder) and _is_nan(encoder.encoded_missing_value):
        # skl2onnx gives the NaN category the next code, sklearn gives it
        # encoded_missing_value (NaN): only the unseen path reproduces that.
        if encoder.handle_unknown != "use_encoded_value" or not _is_nan(
            encoder.unknown_value
        ):
            raise OnnxExportError(
                path,
                f"(column '{name}') encodes missing and unseen categories "
                "differently, which the "
                "ONNX ordinal encoder cannot reproduce",
                f"use model.categorical_encoding 'auto' in {TRAINING_CONF}",
            )
        return CategoryInput(tuple(known), UNSEEN_CATEGORY, key)
    return CategoryInput(tuple(known), key, key)


# --- what can be exported -------------------------------------------------------------


def _walk(estimator: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(path, estimator) for ``estimator`` and every fitted sub-estimator in it."""
    from sklearn.compose import ColumnTransformer  # noqa: PLC0415 (export time only)
    from sklearn.pipeline import FeatureUnion, Pipeline  # noqa: PLC0415

    if isinstance(estimator, str):  # "passthrough" / "drop"
        return
    yield path, estimator
    if isinstance(estimator, Pipeline):
        for name, step in estimator.steps:
            yield from _walk(step, f"{path}/{name}" if path else name)
    elif isinstance(estimator, ColumnTransformer):
        for name, transformer, _ in estimator.transformers_:
            yield from _walk(transformer, f"{path}/{name}")
    elif isinstance(estimator, FeatureUnion):
        for name, transformer in estimator.transformer_list:
            yield from _walk(transformer, f"{path}/{name}")


def check_exportable(layout: ModelLayout) -> None:
    """Refuse what skl2onnx cannot convert, or converts silently wrong.

    Raises:
        OnnxExportError: a step without a converter, a CalendarFeatures step that is
            not first, HistGradientBoosting with native categorical splits or a
            non-identity link, or a final estimator that is not a regressor.
    """
    from skl2onnx import get_model_alias  # noqa: PLC0415 (export-time dependency)
    from sklearn.base import is_regressor  # noqa: PLC0415
    from sklearn.ensemble import HistGradientBoostingRegressor  # noqa: PLC0415

    hint_model = f"choose another model.class in {TRAINING_CONF}"
    for path, estimator in _walk(layout.rest, ""):
        if not path:
            continue
        kind = type(estimator).__name__
        if isinstance(estimator, CalendarFeatures):
            raise OnnxExportError(
                path,
                "(CalendarFeatures) is not the first step; the ONNX form derives "
                "calendar features only before the graph",
                "build the model with modelops.modeling.build_model.",
            )
        try:
            get_model_alias(type(estimator))
        except RuntimeError as err:
            raise OnnxExportError(
                path,
                f"({kind}) has no ONNX converter in skl2onnx",
                f"{hint_model}, or register a converter with "
                f"skl2onnx.update_registered_converter.",
            ) from err
        categorical = getattr(estimator, "is_categorical_", None)
        if categorical is not None and np.any(categorical):
            raise OnnxExportError(
                path,
                f"({kind}) uses native categorical splits (categorical_features), "
                f"which skl2onnx converts silently wrong",
                f"remove categorical_features from model.kwargs in {TRAINING_CONF}; "
                f"modelops encodes categories before the estimator",
            )
        loss = estimator.get_params().get("loss")
        if isinstance(estimator, HistGradientBoostingRegressor) and (
            loss not in IDENTITY_LOSSES
        ):
            raise OnnxExportError(
                path,
                f"({kind}) uses loss={loss!r}, whose inverse link skl2onnx does not "
                f"apply",
                f"use one of {list(IDENTITY_LOSSES)} in model.kwargs ({TRAINING_CONF})",
            )
    final = layout.rest.steps[-1]
    if not is_regressor(final[1]):
        raise OnnxExportError(
            final[0],
            f"({type(final[1]).__name__}) is not a regressor; the ONNX form returns "
            f"one float per row",
            hint_model,
        )


# --- export ---------------------------------------------------------------------------


class _CapturingContainer:
    """Stands in for skl2onnx's container and keeps the float64 tree attributes.

    skl2onnx computes tree thresholds and leaf values in float64 but writes them as
    float32 attributes of ``TreeEnsembleRegressor``; this keeps the float64 arrays it
    was given (by node name) so the node can be rewritten as a float64 TreeEnsemble.
    """

    def __init__(self, container: Any, captured: dict[str, dict[str, Any]]) -> None:
        self._container = container
        self._captured = captured

    def add_node(self, op_type: str, *args: Any, **attrs: Any) -> Any:
        if op_type == "TreeEnsembleRegressor" and "name" in attrs:
            self._captured[attrs["name"]] = dict(attrs)
        return self._container.add_node(op_type, *args, **attrs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)


def _tree_converters(captured: dict[str, dict[str, Any]]) -> dict[type, Callable]:
    """skl2onnx's own tree-regressor converters, writing through the capturing container."""
    from skl2onnx.operator_converters.decision_tree import (  # noqa: PLC0415
        convert_sklearn_decision_tree_regressor,
    )
    from skl2onnx.operator_converters.gradient_boosting import (  # noqa: PLC0415
        convert_sklearn_gradient_boosting_regressor,
    )
    from skl2onnx.operator_converters.random_forest import (  # noqa: PLC0415
        convert_sklearn_random_forest_regressor_converter,
    )
    from sklearn.ensemble import (  # noqa: PLC0415
        ExtraTreesRegressor,
        GradientBoostingRegressor,
        HistGradientBoostingRegressor,
        RandomForestRegressor,
    )
    from sklearn.tree import DecisionTreeRegressor  # noqa: PLC0415

    def capturing(convert: Callable) -> Callable:
        def converter(scope: Any, operator: Any, container: Any) -> None:
            convert(scope, operator, _CapturingContainer(container, captured))

        return converter

    forest = capturing(convert_sklearn_random_forest_regressor_converter)
    return {
        HistGradientBoostingRegressor: forest,
        RandomForestRegressor: forest,
        ExtraTreesRegressor: forest,
        DecisionTreeRegressor: capturing(convert_sklearn_decision_tree_regressor),
        GradientBoostingRegressor: capturing(
            convert_sklearn_gradient_boosting_regressor
        ),
    }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ints(attrs: Mapping[str, Any], key: str) -> list[int]:
    return [int(value) for value in np.asarray(attrs.get(key, [])).ravel()]


def _ensemble_modes(attrs: Mapping[str, Any]) -> list[str]:
    """The node modes of a TreeEnsembleRegressor the rewrite reproduces.

    Raises:
        ValueError: several targets, a post transform, an aggregate other than the
            sum, unknown node modes or several base values.
    """
    if int(attrs.get("n_targets", 1)) != 1 or set(_ints(attrs, "target_ids")) - {0}:
        raise ValueError("several targets")
    if _text(attrs.get("post_transform", "NONE")) != "NONE":
        raise ValueError("a post transform")
    if _text(attrs.get("aggregate_function", "SUM")) != "SUM":
        raise ValueError("trees that are not summed")
    if np.asarray(attrs.get("base_values", [])).size > 1:
        raise ValueError("several base values")
    modes = [_text(mode) for mode in np.asarray(attrs["nodes_modes"]).ravel()]
    unknown = sorted({mode for mode in modes if mode != "LEAF" and mode not in _MODES})
    if unknown:
        raise ValueError(f"node modes {unknown}")
    return modes


def _ensemble_trees(
    attrs: Mapping[str, Any],
) -> tuple[list[int], list[tuple[Any, ...]], list[float]]:
    """(tree roots, branch rows, leaf weights) in the TreeEnsemble (opset 5) layout.

    A branch row is (feature, split, mode, true id, true is leaf, false id, false is
    leaf, missing goes true). The base value becomes the first tree, a single leaf,
    so the sum runs in sklearn's order: base, then each tree in turn.
    """
    modes = _ensemble_modes(attrs)
    weights: dict[tuple[int, int], float] = {}
    for key, weight in zip(
        zip(
            _ints(attrs, "target_treeids"), _ints(attrs, "target_nodeids"), strict=True
        ),
        np.asarray(attrs["target_weights"], dtype=np.float64).ravel().tolist(),
        strict=True,
    ):
        weights[key] = weights.get(key, 0.0) + weight
    splits = np.asarray(attrs["nodes_values"], dtype=np.float64).ravel().tolist()
    features = _ints(attrs, "nodes_featureids")
    children = list(
        zip(
            _ints(attrs, "nodes_truenodeids"),
            _ints(attrs, "nodes_falsenodeids"),
            strict=True,
        )
    )
    missing = _ints(attrs, "nodes_missing_value_tracks_true") or [0] * len(modes)
    trees: dict[int, dict[int, int]] = {}
    for row, (tree, node_id) in enumerate(
        zip(_ints(attrs, "nodes_treeids"), _ints(attrs, "nodes_nodeids"), strict=True)
    ):
        trees.setdefault(tree, {})[node_id] = row
    nodes: list[tuple[Any, ...]] = []
    leaves: list[float] = []
    roots: list[int] = []

    def one_leaf_tree(weight: float) -> None:  # a branch whose both sides are the leaf
        roots.append(len(nodes))
        leaves.append(weight)
        leaf = len(leaves) - 1
        nodes.append((0, 0.0, _MODES["BRANCH_LEQ"], leaf, 1, leaf, 1, 0))

    for base in np.asarray(attrs.get("base_values", []), dtype=np.float64).tolist():
        one_leaf_tree(base)
    for tree in sorted(trees):
        rows = trees[tree]
        branches = [n for n in sorted(rows) if modes[rows[n]] != "LEAF"]
        if not branches:
            one_leaf_tree(weights[tree, next(iter(rows))])
            continue
        index = {n: len(nodes) + k for k, n in enumerate(branches)}
        is_leaf = {n: True for n in rows if modes[rows[n]] == "LEAF"}
        for n in sorted(is_leaf):
            index[n] = len(leaves)
            leaves.append(weights[tree, n])
        roots.append(
            index[0] if 0 in index and 0 not in is_leaf else index[branches[0]]
        )
        for n in branches:
            row = rows[n]
            true, false = children[row]
            true_side = (index[true], int(true in is_leaf))
            false_side = (index[false], int(false in is_leaf))
            condition = (features[row], splits[row], _MODES[modes[row]])
            nodes.append((*condition, *true_side, *false_side, missing[row]))
    return roots, nodes, leaves


def _tree_ensemble(node: Any, attrs: Mapping[str, Any]) -> Any:
    """A float64 ai.onnx.ml TreeEnsemble (opset 5) node equal to a TreeEnsembleRegressor.

    ``attrs`` are the float64 attributes skl2onnx gave the TreeEnsembleRegressor
    (ai.onnx.ml 3 layout: one row per node, leaves included).

    Raises:
        ValueError: an ensemble this rewrite does not reproduce.
    """
    from onnx import helper, numpy_helper  # noqa: PLC0415

    roots, nodes, leaves = _ensemble_trees(attrs)
    feature, split, mode, true, true_leaf, false, false_leaf, tracks = (
        list(column) for column in zip(*nodes, strict=True)
    )
    return helper.make_node(
        "TreeEnsemble",
        list(node.input),
        list(node.output),
        name=node.name,
        domain="ai.onnx.ml",
        tree_roots=roots,
        nodes_featureids=feature,
        nodes_splits=numpy_helper.from_array(np.asarray(split, dtype=np.float64)),
        nodes_modes=numpy_helper.from_array(np.asarray(mode, dtype=np.uint8)),
        nodes_truenodeids=true,
        nodes_trueleafs=true_leaf,
        nodes_falsenodeids=false,
        nodes_falseleafs=false_leaf,
        nodes_missing_value_tracks_true=tracks,
        leaf_targetids=[0] * len(leaves),
        leaf_weights=numpy_helper.from_array(np.asarray(leaves, dtype=np.float64)),
        n_targets=1,
        aggregate_function=1,  # SUM
        post_transform=0,  # NONE
    )


def _float64_trees(proto: Any, captured: Mapping[str, Mapping[str, Any]]) -> int:
    """Rewrite captured TreeEnsembleRegressor nodes as float64 TreeEnsemble nodes."""
    from onnx import TensorProto  # noqa: PLC0415

    replaced = 0
    for index, node in enumerate(proto.graph.node):
        if node.op_type != "TreeEnsembleRegressor" or node.name not in captured:
            continue
        new = _tree_ensemble(node, captured[node.name])
        proto.graph.node.remove(node)
        proto.graph.node.insert(index, new)
        outputs = set(new.output)
        for value in [*proto.graph.output, *proto.graph.value_info]:
            if value.name in outputs:  # the ensemble now answers in float64
                value.type.tensor_type.elem_type = TensorProto.DOUBLE
        replaced += 1
    if replaced:
        for opset in proto.opset_import:
            if opset.domain == "ai.onnx.ml":
                opset.version = ML_OPSET_TREES
    return replaced


def _grouped_inputs(proto: Any, categorical: list[str], numeric: list[str]) -> None:
    """Replace the graph's [N, 1] column inputs by two matrices, split inside the graph.

    One input per column costs the caller an array per column and a request; two
    matrices are built in a few microseconds. A Split node gives each column its
    old name back, so the converted graph is untouched.

    Raises:
        ValueError: a graph input that is neither, or a name already taken.
    """
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    graph = proto.graph
    inputs = [item.name for item in graph.input]
    stray = sorted(set(inputs) - set(categorical) - set(numeric))
    taken = {CATEGORICAL_INPUT, NUMERIC_INPUT} & {
        *inputs,
        *(name for node in graph.node for name in [*node.input, *node.output]),
        *(item.name for item in graph.initializer),
    }
    if stray or taken:
        raise ValueError(f"graph inputs {stray or sorted(taken)}")
    splits, matrices = [], []
    for name, columns, kind in (
        (CATEGORICAL_INPUT, categorical, TensorProto.STRING),
        (NUMERIC_INPUT, numeric, TensorProto.DOUBLE),
    ):
        if not columns:
            continue
        sizes = numpy_helper.from_array(
            np.ones(len(columns), np.int64), f"{name}_sizes"
        )
        graph.initializer.append(sizes)
        splits.append(
            helper.make_node(
                "Split", [name, sizes.name], columns, axis=1, name=f"{name}_split"
            )
        )
        matrices.append(helper.make_tensor_value_info(name, kind, [None, len(columns)]))
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend([*splits, *nodes])
    del graph.input[:]
    graph.input.extend(matrices)


def export_onnx(
    model: Any, features: Mapping[str, Any], *, name: str = "modelops"
) -> bytes:
    """The ONNX form of a fitted modelops Pipeline, or a clear refusal.

    The graph takes two inputs: ``CATEGORICAL_INPUT``, an ``[N, k]`` string matrix of
    the categorical columns, and ``NUMERIC_INPUT``, an ``[N, m]`` float64 matrix of
    the numeric and calendar columns (orders in the metadata). The calendar
    features are derived before the graph by
    ``modelops.features.CALENDAR_FEATURES``, the definitions ``CalendarFeatures``
    uses. Tree regressors become float64 ``TreeEnsemble`` nodes (ai.onnx.ml 5).
    How to feed the graph (columns, calendar, missing categories) is stored as
    JSON in the model's metadata under ``METADATA_KEY``; ``OnnxPredictor`` reads it.

    Args:
        model: The fitted Pipeline ``train_model`` returns.
        features: The ``features`` parameters it was trained with.
        name: The graph's name.

    Returns:
        The serialized ONNX model. Verify it with ``verify_onnx`` before serving it.

    Raises:
        OnnxExportError: the model cannot be converted faithfully; the message names
            the step and the reason.
    """
    layout = model_layout(model, features)
    check_exportable(layout)
    import onnx  # noqa: PLC0415 (export-time dependencies)
    from skl2onnx import convert_sklearn  # noqa: PLC0415
    from skl2onnx.common.data_types import (  # noqa: PLC0415
        DoubleTensorType,
        StringTensorType,
    )

    initial_types = [
        (column, StringTensorType([None, 1])) for column in layout.categorical
    ] + [(column, DoubleTensorType([None, 1])) for column in layout.numeric]
    captured: dict[str, dict[str, Any]] = {}
    hint = f"choose another model.class in {TRAINING_CONF}, or keep serving sklearn"
    try:
        with warnings.catch_warnings():
            # skl2onnx writes booleans into int attributes: protobuf 6 warns, 7
            # rejects them (hence protobuf<7 in pyproject.toml).
            warnings.filterwarnings(
                "ignore", "Field onnx.AttributeProto.ints", DeprecationWarning
            )
            proto = convert_sklearn(
                layout.rest,
                name=name,
                initial_types=initial_types,
                target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
                custom_conversion_functions=_tree_converters(captured),
            )
    except Exception as err:
        raise OnnxExportError(
            "model", f"failed in skl2onnx ({type(err).__name__}: {err})", hint
        ) from err
    try:
        trees = _float64_trees(proto, captured)
    except ValueError as err:
        raise OnnxExportError(
            layout.rest.steps[-1][0], f"has {err}, not rewritten in float64", hint
        ) from err
    inputs = {graph_input.name for graph_input in proto.graph.input}
    categorical = [column for column in layout.categorical if column in inputs]
    numeric = [column for column in layout.numeric if column in inputs]
    try:
        _grouped_inputs(proto, categorical, numeric)
    except ValueError as err:
        raise OnnxExportError("model", f"has unexpected {err}", hint) from err
    metadata = {
        "format": METADATA_FORMAT,
        "columns": layout.columns,
        "time_column": layout.time_column,
        "calendar": layout.calendar,
        "categorical": [
            {
                "column": column,
                "missing": layout.categorical[column].missing,
                "missing_key": layout.categorical[column].missing_key,
            }
            for column in categorical
        ],
        "numeric": numeric,
        "nan_allowed": layout.nan_allowed,
        "estimator": layout.estimator,
        "float64_trees": trees,
    }
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(metadata)})
    try:
        onnx.checker.check_model(proto)
        onnx_bytes = proto.SerializeToString()
        OnnxPredictor(onnx_bytes)
    except Exception as err:
        raise OnnxExportError(
            "model",
            f"was converted to a graph onnxruntime refuses ({type(err).__name__}: "
            f"{str(err)[:300]})",
            hint,
        ) from err
    return onnx_bytes


# --- prediction -----------------------------------------------------------------------


def _moment(value: Any) -> dt.datetime:
    """The wall-clock date-time of one JSON/Python timestamp value."""
    if type(value) is str:
        moment = dt.datetime.fromisoformat(value)
    elif isinstance(value, dt.datetime) and value is not pd.NaT:
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime.combine(value, dt.time())
    elif isinstance(value, np.datetime64) and not np.isnat(value):
        moment = pd.Timestamp(value)
    else:
        raise ValueError(f"expected an ISO 8601 timestamp, got {type(value).__name__}")
    if moment.tzinfo is not None:  # the wall clock, as CalendarFeatures reads it
        moment = moment.replace(tzinfo=None)
    return moment


class OnnxPredictor:
    """Scores rows with an exported ONNX model on onnxruntime (CPU), without sklearn.

    Args:
        onnx_bytes: What ``export_onnx`` returned (never a pickle).
        intra_op_threads: onnxruntime's threads within an operator (default 1: the
            service runs several requests at once, and one thread keeps the sum of
            the trees in sklearn's order).
        inter_op_threads: onnxruntime's threads across operators.
        row_threads: Runs of the session at once on a large batch, each on its own
            share of the rows (``ROW_SPLIT_MIN`` rows or more). Unlike intra-op
            threads this keeps every row's sum of trees in sklearn's order, so the
            predictions are bit-equal to a single run's.

    Raises:
        OnnxModelError: the bytes carry no modelops metadata, or metadata that does
            not match the graph's inputs.
    """

    def __init__(
        self,
        onnx_bytes: bytes,
        *,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        row_threads: int = 1,
    ) -> None:
        import onnxruntime as ort  # noqa: PLC0415 (only the predictor needs it)

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.sha256 = onnx_sha256(onnx_bytes)
        self.providers: list[str] = list(self._session.get_providers())
        self.threads = (intra_op_threads, inter_op_threads)
        self.row_threads = max(1, int(row_threads))
        text = self._session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        spec = json.loads(text) if text else {}
        if spec.get("format") != METADATA_FORMAT:
            raise OnnxModelError(
                f"The ONNX model (sha256 {self.sha256[:12]}) has no modelops metadata "
                f"of format {METADATA_FORMAT} under '{METADATA_KEY}'.\nHint: export "
                f"it with modelops.onnx_model.export_onnx."
            )
        self.spec: dict[str, Any] = spec
        self.columns: list[str] = list(spec["columns"])
        self._time_column: str | None = spec["time_column"]
        self._calendar: list[str] = list(spec["calendar"])
        self._nan_allowed = bool(spec["nan_allowed"])
        self._categorical = [
            (rule["column"], rule["missing"], rule["missing_key"])
            for rule in spec["categorical"]
        ]
        self._numeric: list[str] = list(spec["numeric"])
        expected = {
            name: width
            for name, width in (
                (CATEGORICAL_INPUT, len(self._categorical)),
                (NUMERIC_INPUT, len(self._numeric)),
            )
            if width
        }
        found = {item.name: item.shape[-1] for item in self._session.get_inputs()}
        if found != expected:
            raise OnnxModelError(
                f"The ONNX model's inputs {found} do not match its metadata "
                f"{expected}.\nHint: export it again with export_onnx."
            )
        self._output = self._session.get_outputs()[0].name

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predictions for the rows of ``frame`` (the model's input columns), float64."""
        absent = [column for column in self.columns if column not in frame.columns]
        if absent:
            raise ValueError(f"Columns {absent} are missing from the input frame.")
        if len(frame) == 0:
            return np.empty(0, dtype=np.float64)
        derived: dict[str, Any] = {}
        if self._calendar and self._time_column:
            derived = calendar_columns(frame[self._time_column], self._calendar)
        feeds: dict[str, np.ndarray] = {}
        if self._categorical:
            feeds[CATEGORICAL_INPUT] = np.column_stack(
                [
                    _category_column(frame[column], missing, key)
                    for column, missing, key in self._categorical
                ]
            )
        if self._numeric:
            numbers = np.empty((len(frame), len(self._numeric)), dtype=np.float64)
            for index, column in enumerate(self._numeric):
                numbers[:, index] = (
                    derived[column]
                    if column in derived
                    else frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
                )
            feeds[NUMERIC_INPUT] = self._checked(numbers)
        return self._run(feeds)

    def predict_values(self, values: Mapping[str, Any]) -> np.ndarray:
        """Predictions for JSON values: column -> list of values (or one value).

        Timestamps are ISO 8601 strings (or datetime values), categories strings,
        numbers int/float/bool; None is a missing value (NaN, as the service's
        string columns read it).
        """
        columns: dict[str, Any] = {}
        for column in self.columns:
            value = values.get(column, _ABSENT)
            if value is _ABSENT:
                absent = [c for c in self.columns if c not in values]
                raise ValueError(f"Columns {absent} are missing from the values.")
            columns[column] = value if isinstance(value, (list, tuple)) else [value]
        count = len(columns[self.columns[0]])
        if any(len(column) != count for column in columns.values()):
            raise ValueError("All columns must hold the same number of values.")
        if count == 0:
            return np.empty(0, dtype=np.float64)
        if self._calendar and self._time_column:
            stamps = columns[self._time_column]
            if count == 1:  # plain Python: a few microseconds for one request
                moment = _moment(stamps[0])
                for name in self._calendar:
                    columns[name] = (CALENDAR_FEATURES[name](moment),)
            else:
                moments = [_moment(value) for value in stamps]
                columns.update(calendar_columns(moments, self._calendar))
        rows = range(count)  # row-major [N, k] and [N, m] matrices
        feeds: dict[str, np.ndarray] = {}
        if self._categorical:
            feeds[CATEGORICAL_INPUT] = np.array(
                [
                    [
                        _category(columns[column][row], missing, key, column)
                        for column, missing, key in self._categorical
                    ]
                    for row in rows
                ],
                dtype=object,
            )
        if self._numeric:
            numbers = [[columns[c][row] for c in self._numeric] for row in rows]
            feeds[NUMERIC_INPUT] = self._checked(np.array(numbers, dtype=np.float64))
        return self._run(feeds)

    def _checked(self, numbers: np.ndarray) -> np.ndarray:
        """``numbers``, or a ValueError where sklearn would refuse NaN or infinity."""
        if not self._nan_allowed and not np.isfinite(numbers).all():
            bad = self._numeric[int(np.flatnonzero(~np.isfinite(numbers).all(0))[0])]
            raise ValueError(
                f"Column '{bad}' holds missing or infinite values, which the "
                f"model's estimator does not accept."
            )
        return numbers

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        rows = len(next(iter(feeds.values())))
        if self.row_threads == 1 or rows < ROW_SPLIT_MIN:
            return self._run_rows(feeds)
        # onnxruntime releases the GIL in run() and a session may be run from
        # several threads at once: each thread scores a contiguous share of rows.
        bounds = np.linspace(0, rows, self.row_threads + 1).astype(int)
        shares = [
            {name: values[start:stop] for name, values in feeds.items()}
            for start, stop in itertools.pairwise(bounds)
        ]
        with ThreadPoolExecutor(self.row_threads) as pool:
            return np.concatenate(list(pool.map(self._run_rows, shares)))

    def _run_rows(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        (out,) = self._session.run([self._output], feeds)
        return np.asarray(out, dtype=np.float64).reshape(-1)


def _category(value: Any, missing: str, key: str | None, column: str) -> str:
    """One JSON category as the graph must see it."""
    if type(value) is str:
        return UNSEEN_CATEGORY if value == key else value
    if _is_missing(value):
        return missing
    raise ValueError(
        f"Column '{column}' expects text categories, got {type(value).__name__}."
    )


def _category_column(column: pd.Series, missing: str, key: str | None) -> np.ndarray:
    """A categorical column as the graph must see it: N strings, as sklearn reads them.

    NaN (the missing value of pandas' string dtype) is fed as ``missing``. In an
    object column, sklearn tells None apart from NaN: None, never a trained category
    here, is unseen to it, and so to the graph.
    """
    values = column.to_numpy(dtype=object)
    absent = pd.isna(values)
    if column.dtype == object or not pd.api.types.is_string_dtype(column.dtype):
        kind = pd.api.types.infer_dtype(values, skipna=True)
        if kind not in ("string", "empty"):
            raise ValueError(
                f"Column '{column.name}' expects text categories, got {kind} values."
            )
        nones = np.fromiter((value is None for value in values), bool, len(values))
    else:
        nones = None
    fed = np.where(values == key, UNSEEN_CATEGORY, values) if key else values.copy()
    fed[absent] = missing
    if nones is not None and nones.any():
        fed[nones] = UNSEEN_CATEGORY
    return fed


# --- verification ---------------------------------------------------------------------

CRITERION = "|onnx - sklearn| <= tolerance * max(1, |sklearn|) on every row"
# Calendar edge cases: midnight, the last second of a day, weekends, month and year
# ends, leap days, ISO week 53 and week 1, the epoch and the day before it.
CALENDAR_EDGES = (
    "2025-03-03T00:00:00",  # Monday midnight
    "2025-03-01T23:59:59",  # Saturday, last second
    "2025-03-02T00:00:00",  # Sunday midnight
    "2025-03-02T23:00:00",  # Sunday 23 h
    "2024-12-31T23:59:59.999999",  # Dec 31 of a leap year
    "2025-12-31T00:00:00",
    "2026-01-01T00:00:00",
    "2024-02-29T12:00:00",  # leap day
    "2100-03-01T00:00:00",  # 2100 is not a leap year
    "2000-02-29T23:00:00",
    "2020-12-31T13:00:00",  # ISO week 53
    "2021-01-03T23:59:59",  # Sunday, still ISO week 53 of 2020
    "2024-12-30T00:00:00",  # Monday, ISO week 1 of 2025
    "1970-01-01T00:00:00",
    "1969-12-31T23:00:00",
    "1999-12-31T23:59:59",
)
UNSEEN_VALUES = ("__unseen__", "", "nan", "None", "NaN", UNSEEN_CATEGORY)


def _edge_groups(
    template: pd.DataFrame, layout: ModelLayout
) -> Iterator[tuple[str, pd.DataFrame]]:
    """Synthetic rows (label, frame) around ``template`` rows of the held-out set."""
    base = template.reset_index(drop=True)

    def rows(count: int) -> pd.DataFrame:
        return base.iloc[np.arange(count) % len(base)].reset_index(drop=True)

    for column, spec in layout.categorical.items():
        if spec.known:
            frame = rows(len(spec.known))
            yield (
                f"every category of {column}",
                frame.assign(**{column: list(spec.known)}),
            )
        yield (
            f"missing {column}",
            rows(2).assign(**{column: pd.Series([None, None], dtype="str")}),
        )
        unseen = [*UNSEEN_VALUES, *([spec.missing_key] if spec.missing_key else [])]
        yield (
            f"unseen categories of {column}",
            rows(len(unseen)).assign(**{column: unseen}),
        )
    if layout.categorical:
        frame = rows(3)
        for column in layout.categorical:
            frame[column] = pd.Series([None, "__unseen__", None], dtype="str")
        yield "every category missing or unseen", frame
    raw_numeric = [c for c in layout.numeric if c not in layout.calendar]
    for column in raw_numeric:
        observed = pd.to_numeric(base[column], errors="coerce").astype("float64")
        low, high = float(observed.min()), float(observed.max())
        span = max(high - low, 1.0)
        extremes = [
            -1e12,
            -1e6,
            -1.0,
            0.0,
            1.0,
            1e6,
            1e12,
            low - 10 * span,
            high + 10 * span,
        ]
        yield (
            f"missing {column}",
            rows(2).assign(**{column: pd.Series([np.nan, np.nan], dtype="float64")}),
        )
        yield (
            f"extreme values of {column}",
            rows(len(extremes)).assign(
                **{column: pd.Series(extremes, dtype="float64")}
            ),
        )
    if raw_numeric:
        frame = rows(2)
        for column in raw_numeric:
            frame[column] = pd.Series([1e12, -1e12], dtype="float64")
        yield "every numeric column extreme", frame
    if layout.time_column and layout.calendar:
        stamps = pd.to_datetime(list(CALENDAR_EDGES), format="ISO8601").astype(
            "datetime64[us]"
        )
        yield (
            "calendar edge cases",
            rows(len(stamps)).assign(**{layout.time_column: stamps}),
        )
        hours = pd.date_range("2025-12-26", "2026-01-05", freq="7h").astype(
            "datetime64[us]"
        )
        yield (
            "every hour and weekday around a year end",
            rows(len(hours)).assign(**{layout.time_column: hours}),
        )


def _json_values(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """A frame as the column -> list of JSON values a request carries."""
    out: dict[str, list[Any]] = {}
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            out[column] = [None if pd.isna(v) else v.isoformat() for v in series]
        else:
            out[column] = [
                None if _is_missing(v) else (v.item() if hasattr(v, "item") else v)
                for v in series.astype(object)
            ]
    return out


def _attempt(predict: Callable[[], Any]) -> tuple[np.ndarray | None, str | None]:
    """Predictions as float64, or why they were refused."""
    try:
        return np.asarray(predict(), dtype=np.float64).reshape(-1), None
    except Exception as err:  # a refusal is an outcome to compare
        return None, f"{type(err).__name__}: {str(err)[:200]}"


def _one_by_one(
    predictor: OnnxPredictor, frame: pd.DataFrame
) -> tuple[np.ndarray | None, str | None]:
    """The JSON-values path, one row per call as requests come."""
    values = _json_values(frame)
    predictions = []
    for row in range(len(frame)):
        single = {
            column: [column_values[row]] for column, column_values in values.items()
        }
        predicted, error = _attempt(lambda v=single: predictor.predict_values(v))
        if predicted is None:
            return None, error
        predictions.append(predicted)
    return np.concatenate(predictions), None


@dataclasses.dataclass
class _Tally:
    """What verification found so far."""

    tolerance: float
    rows_checked: int = 0
    held_out_rows: int = 0
    edge_rows: int = 0
    json_rows: int = 0
    refused_rows: int = 0
    max_abs_diff: float = 0.0
    max_rel_diff: float = 0.0
    exact: bool = True
    failures: list[str] = dataclasses.field(default_factory=list)

    def compare(self, label: str, expected: np.ndarray, predicted: np.ndarray) -> None:
        """Add one path's predictions against sklearn's."""
        if predicted.shape != expected.shape:
            self.failures.append(f"{label}: {predicted.shape} predictions")
            return
        both_nan = np.isnan(expected) & np.isnan(predicted)
        with np.errstate(invalid="ignore"):
            diff = np.abs(predicted - expected)
        diff[both_nan] = 0.0
        diff[np.isnan(diff)] = np.inf  # NaN against a number
        self.max_abs_diff = max(self.max_abs_diff, float(diff.max()))
        nonzero = expected != 0
        if nonzero.any():
            relative = float((diff[nonzero] / np.abs(expected[nonzero])).max())
            self.max_rel_diff = max(self.max_rel_diff, relative)
        self.exact &= bool(np.array_equal(predicted, expected, equal_nan=True))
        scale = np.maximum(1.0, np.abs(np.nan_to_num(expected, nan=0.0)))
        bad = ~(diff <= self.tolerance * scale)
        if bad.any():
            self.failures.append(
                f"{label}: {int(bad.sum())} of {len(diff)} rows differ by up to "
                f"{float(diff.max()):.3g} (tolerance {self.tolerance:g})"
            )

    def check(
        self,
        label: str,
        frame: pd.DataFrame,
        model: Any,
        predictor: OnnxPredictor,
        json_rows: int,
    ) -> None:
        """Score ``frame`` with sklearn and ONNX (both paths) and compare."""
        expected, sklearn_error = _attempt(lambda: model.predict(frame))
        got, onnx_error = _attempt(lambda: predictor.predict(frame))
        if expected is None:
            if got is not None:
                self.failures.append(
                    f"{label}: ONNX scores rows sklearn refuses ({sklearn_error})"
                )
            else:
                self.refused_rows += len(frame)
            return
        if got is None:
            self.failures.append(
                f"{label}: ONNX refuses rows sklearn scores ({onnx_error})"
            )
            return
        self.compare(label, expected, got)
        self.rows_checked += len(frame)
        if json_rows:
            singles, error = _one_by_one(predictor, frame.head(json_rows))
            if singles is None:
                self.failures.append(f"{label}: the JSON path refuses a row ({error})")
                return
            self.compare(f"{label} (JSON values)", expected[: len(singles)], singles)
            self.json_rows += len(singles)


def verify_onnx(  # noqa: PLR0913
    model: Any,
    onnx_bytes: bytes,
    held_out: pd.DataFrame,
    features: Mapping[str, Any],
    tolerance: float,
    *,
    max_rows: int = 100_000,
    single_rows: int = 32,
    intra_op_threads: int = 1,
) -> dict[str, Any]:
    """Compare the ONNX model with ``model.predict``; a mismatch is reported, not raised.

    Rows: up to ``max_rows`` held-out rows (evenly spaced), plus synthetic edge rows
    built on them: every known category, missing and unseen categories, missing and
    extreme numeric values, calendar edge cases. Every group goes through the
    DataFrame path; the edge rows and ``single_rows`` held-out rows also through the
    JSON-values path, one row per call (as requests are served). Where sklearn
    refuses rows (e.g. NaN into Ridge), the ONNX predictor must refuse them too.

    Args:
        model: The fitted Pipeline.
        onnx_bytes: Its ONNX form (``export_onnx``).
        held_out: Rows the model was not trained on, with the model's input columns.
        features: The ``features`` parameters.
        tolerance: Passed when ``|onnx - sklearn| <= tolerance * max(1, |sklearn|)``
            on every row (absolute below 1, relative above).
        max_rows: At most this many held-out rows.
        single_rows: Held-out rows also scored one by one from JSON values.
        intra_op_threads: onnxruntime threads, as the server will run it.

    Returns:
        ``passed``, ``reason`` (None when passed), ``tolerance``, ``criterion``,
        ``rows_checked`` (held-out plus edge rows compared), ``held_out_rows``,
        ``edge_rows``, ``json_rows``, ``refused_rows`` (refused by both),
        ``max_abs_diff``, ``max_rel_diff`` (over rows where sklearn is not 0),
        ``exact`` (every prediction bit-identical), ``failures``, ``onnx_sha256``.

    Raises:
        ValueError: ``tolerance`` is not a number >= 0.
    """
    if isinstance(tolerance, bool) or not (
        isinstance(tolerance, (int, float)) and tolerance >= 0
    ):
        raise ValueError(f"tolerance must be a number >= 0, got {tolerance!r}.")
    tally = _Tally(float(tolerance))
    reason = None
    try:
        predictor = OnnxPredictor(onnx_bytes, intra_op_threads=intra_op_threads)
        layout = model_layout(model, features)
    except Exception as err:  # reported, not raised
        predictor, reason = (
            None,
            f"the ONNX model cannot be used ({type(err).__name__}: {err})",
        )
    if predictor is not None:
        absent = [c for c in predictor.columns if c not in held_out.columns]
        if absent or held_out.empty:
            reason = (
                f"the held-out set lacks columns {absent}"
                if absent
                else "no held-out rows"
            )
        else:
            positions = np.linspace(0, len(held_out) - 1, min(max_rows, len(held_out)))
            sample = held_out[predictor.columns].iloc[np.unique(positions.astype(int))]
            sample = sample.reset_index(drop=True)
            tally.check("held-out rows", sample, model, predictor, single_rows)
            tally.held_out_rows = len(sample)
            for label, frame in _edge_groups(sample.head(8), layout):
                tally.check(label, frame, model, predictor, len(frame))
                tally.edge_rows += len(frame)
    if reason is None and tally.failures:
        more = len(tally.failures) - 1
        reason = f"ONNX disagrees with sklearn: {tally.failures[0]}" + (
            f" (and {more} more)" if more else ""
        )
    report = dataclasses.asdict(tally)
    return {
        "passed": reason is None,
        "reason": None if reason is None else f"{reason}. {FALLBACK}",
        "criterion": CRITERION,
        **report,
        "onnx_sha256": onnx_sha256(onnx_bytes),
    }
