"""Change detection: the watcher, intake (filters and settling), the reconcile walk,
and what a change means for the database. Imports leaves and the store, never workers/."""
