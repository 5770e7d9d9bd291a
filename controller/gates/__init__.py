"""Pure logic of the gates that must hold before a release starts.

Cron and deploy-window arithmetic, the migration linter, and the judges that
turn facts (information_schema rows, Secret keys, backup times) into a
verdict. Nothing here does I/O: the adapters fetch the facts, the runtime
hands them to these functions, and the engine decides what the verdicts mean.
"""
