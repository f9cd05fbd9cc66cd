"""Baseline data-valuation methods, run through the same job, results and endpoints as DVRL.

* :class:`~dvrl_core.baselines.knn_shapley.KNNShapley`: exact KNN-Shapley (Jia et al., VLDB 2019).
* :class:`~dvrl_core.baselines.data_oob.DataOOB`: the out-of-bag estimate of a bagging ensemble
  (Kwon & Zou, ICML 2023).
* :class:`~dvrl_core.baselines.leave_one_out.LeaveOneOut`: the validation score lost when a row is
  left out of the training set.

Each is an estimator in scikit-learn's style with DVRL's ``fit`` signature (see
:mod:`dvrl_core.methods`); a higher value means a more valuable row.
"""

from __future__ import annotations
