"""The service layer shared by the API and the worker: settings, database models, dataset
storage, the job state machine, the job runner and result queries. Imports flow one way:
api, worker -> service -> dvrl_core."""
