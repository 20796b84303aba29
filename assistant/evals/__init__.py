"""Citation evals (`assistant eval`): eval sets, the runner, metrics, reports and the CI gate."""
